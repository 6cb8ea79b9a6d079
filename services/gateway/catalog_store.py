"""The :class:`~services.gateway.ports.CatalogEditor` over the feature store's PostgreSQL and Redis.

Writes go through :class:`shared.store.catalog.CatalogWriter`, the same writer the catalog loader
uses: PostgreSQL first (the source of truth), then the Redis mirror the feature store serves to the
ranker, where a retired item or bundle is flagged (and a retired bundle leaves the live indexes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeVar

import redis
import sqlalchemy.exc
from sqlalchemy import select

from shared.errors import NotFound, Unavailable
from shared.store import tables
from shared.store.catalog import CatalogBundle, CatalogItem, CatalogWriter
from shared.store.migrate import make_engine

T = TypeVar("T")


class StoreCatalogEditor:
    """Runs the blocking writes in a worker thread; nothing connects on construction."""

    def __init__(self, postgres_url: str, redis_url: str, namespace: str) -> None:
        self._engine = make_engine(postgres_url, namespace, pool_size=2)
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=10, decode_responses=True)
        self._writer = CatalogWriter(self._engine, self._redis, namespace)

    async def upsert_catalog(self, catalog_id: str, name: str, currency: str | None) -> None:
        await self._run(self._writer.upsert_catalog, catalog_id, name, "gateway", currency)

    async def upsert_items(self, catalog_id: str, items: Sequence[CatalogItem]) -> None:
        await self._run(self._upsert_items, catalog_id, items)

    async def upsert_bundles(self, catalog_id: str, bundles: Sequence[CatalogBundle]) -> None:
        await self._run(self._upsert_bundles, catalog_id, bundles)

    async def retire_item(self, catalog_id: str, item_id: str) -> bool:
        return await self._run(self._retire_item, catalog_id, item_id)

    async def retire_bundle(self, catalog_id: str, bundle_id: str) -> bool:
        return await self._run(self._retire_bundle, catalog_id, bundle_id)

    async def close(self) -> None:
        self._engine.dispose()
        self._redis.close()

    async def _run(self, write: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.to_thread(write, *args)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
            raise Unavailable("the catalog's PostgreSQL is unavailable; nothing was written, retry") from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise Unavailable("the catalog's Redis is unavailable; send the same request again") from exc

    def _require_catalog(self, catalog_id: str) -> None:
        if not self._writer.catalog_exists(catalog_id):
            raise NotFound(f"catalog {catalog_id} does not exist: create it with PUT /v1/catalogs/{catalog_id}")

    def _upsert_items(self, catalog_id: str, items: Sequence[CatalogItem]) -> None:
        self._require_catalog(catalog_id)
        self._writer.upsert_items(catalog_id, items)

    def _upsert_bundles(self, catalog_id: str, bundles: Sequence[CatalogBundle]) -> None:
        self._require_catalog(catalog_id)
        wanted = sorted({item_id for bundle in bundles for item_id in bundle.item_ids})
        with self._engine.connect() as conn:
            known = set(
                conn.execute(
                    select(tables.items.c.item_id).where(
                        tables.items.c.catalog_id == catalog_id, tables.items.c.item_id.in_(wanted)
                    )
                ).scalars()
            )
        missing = [item_id for item_id in wanted if item_id not in known]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise NotFound(f"unknown item(s) {shown} in catalog {catalog_id}: send them to .../items first")
        self._writer.upsert_bundles(catalog_id, bundles)

    def _retire_item(self, catalog_id: str, item_id: str) -> bool:
        with self._engine.connect() as conn:
            exists = conn.execute(
                select(tables.items.c.item_id).where(
                    tables.items.c.catalog_id == catalog_id, tables.items.c.item_id == item_id
                )
            ).first()
        if exists is None:
            return False
        self._writer.retire_items(catalog_id, [item_id])
        return True

    def _retire_bundle(self, catalog_id: str, bundle_id: str) -> bool:
        """Rewrites the bundle as retired, keeping its members (the writer needs them to unindex it)."""
        with self._engine.connect() as conn:
            row = (
                conn.execute(
                    select(tables.bundles).where(
                        tables.bundles.c.catalog_id == catalog_id, tables.bundles.c.bundle_id == bundle_id
                    )
                )
                .mappings()
                .first()
            )
            members = conn.execute(
                select(tables.bundle_items.c.item_id)
                .where(tables.bundle_items.c.catalog_id == catalog_id, tables.bundle_items.c.bundle_id == bundle_id)
                .order_by(tables.bundle_items.c.position)
            ).scalars()
            item_ids = tuple(members)
        if row is None:
            return False
        self._writer.upsert_bundles(
            catalog_id,
            [
                CatalogBundle(
                    bundle_id=bundle_id,
                    name=row["name"],
                    item_ids=item_ids,
                    price=row["price"],
                    discounted_price=row["discounted_price"],
                    source=row["source"],
                    attributes=row["attributes"],
                    retired=True,
                )
            ],
        )
        return True
