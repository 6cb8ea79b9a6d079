"""Catalog writes: items and bundles go to PostgreSQL and are mirrored into Redis for serving.

A retired item or bundle stays in PostgreSQL (history refers to it) but leaves the live sets, so it
is never recommended.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects.postgresql import insert

from shared.store import tables
from shared.store.redis_keys import CatalogKeys, NamespaceKeys

# Catalog rows are written in chunks so one huge catalog never builds one huge statement.
CHUNK = 2000


@dataclass(frozen=True)
class CatalogItem:
    item_id: str
    title: str
    category_path: tuple[str, ...] = ()
    price: float | None = None
    image_url: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)
    retired: bool = False


@dataclass(frozen=True)
class CatalogBundle:
    bundle_id: str
    name: str
    item_ids: tuple[str, ...]
    price: float | None = None
    discounted_price: float | None = None
    source: str = "catalog"
    attributes: Mapping[str, Any] = field(default_factory=dict)
    retired: bool = False


def affinity_category(category_path: Sequence[str]) -> str:
    """The category a shopper's interest is counted under: the second level when there is one.

    The root ("Electronics", "Clothing, Shoes & Jewelry") says little; the level below it
    ("Camera & Photo", "Women") is what tells shoppers apart.
    """
    if len(category_path) > 1:
        return category_path[1]
    return category_path[0] if category_path else ""


def _chunks(rows: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def new_version() -> str:
    """A catalog version token: random, so a mirror rebuilt after Redis was lost never repeats one."""
    return uuid.uuid4().hex


def mark_changed(pipe: redis.client.Pipeline, keys: NamespaceKeys, catalog_id: str) -> None:
    """Queues on ``pipe`` what every write to a catalog's mirror ends with: a fresh version token,
    which tells a reader holding a copy that it is stale, and the catalog's id in the namespace's
    list of catalogs, where rankers find catalogs synced after they started."""
    pipe.set(keys.catalog(catalog_id).catalog_version(), new_version())
    pipe.sadd(keys.catalogs(), catalog_id)


def _price_field(price: float | None) -> str:
    return "" if price is None else repr(price)


class CatalogWriter:
    """Upserts catalogs, items and bundles into PostgreSQL, then mirrors them into Redis."""

    def __init__(self, engine: Engine, redis_client: redis.Redis, namespace: str) -> None:
        self._engine = engine
        self._redis = redis_client
        self._keys = NamespaceKeys(namespace)

    def upsert_catalog(self, catalog_id: str, name: str, source: str, currency: str | None = None) -> None:
        statement = insert(tables.catalogs).values(catalog_id=catalog_id, name=name, source=source, currency=currency)
        statement = statement.on_conflict_do_update(
            index_elements=["catalog_id"],
            set_={"name": statement.excluded.name, "source": statement.excluded.source, "currency": currency},
        )
        with self._engine.begin() as conn:
            conn.execute(statement)

    def catalog_exists(self, catalog_id: str) -> bool:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(tables.catalogs.c.catalog_id).where(tables.catalogs.c.catalog_id == catalog_id)
            ).first()
        return row is not None

    def upsert_items(self, catalog_id: str, items: Sequence[CatalogItem]) -> None:
        rows = [
            {
                "catalog_id": catalog_id,
                "item_id": item.item_id,
                "title": item.title,
                "category_path": list(item.category_path),
                "price": item.price,
                "image_url": item.image_url,
                "attributes": dict(item.attributes),
                "retired": item.retired,
                "first_seen_in_event": False,
            }
            for item in items
        ]
        with self._engine.begin() as conn:
            for chunk in _chunks(rows):
                statement = insert(tables.items)
                statement = statement.on_conflict_do_update(
                    index_elements=["catalog_id", "item_id"],
                    set_={
                        name: statement.excluded[name]
                        for name in (
                            "title",
                            "category_path",
                            "price",
                            "image_url",
                            "attributes",
                            "retired",
                            "first_seen_in_event",
                        )
                    },
                )
                conn.execute(statement, chunk)
        self._mirror_items(catalog_id, items)

    def upsert_bundles(self, catalog_id: str, bundles: Sequence[CatalogBundle]) -> None:
        rows = [
            {
                "catalog_id": catalog_id,
                "bundle_id": b.bundle_id,
                "name": b.name,
                "price": b.price,
                "discounted_price": b.discounted_price,
                "source": b.source,
                "attributes": dict(b.attributes),
                "retired": b.retired,
            }
            for b in bundles
        ]
        members = [
            {"catalog_id": catalog_id, "bundle_id": b.bundle_id, "item_id": item_id, "position": position}
            for b in bundles
            for position, item_id in enumerate(dict.fromkeys(b.item_ids))
        ]
        with self._engine.begin() as conn:
            for chunk in _chunks(rows):
                statement = insert(tables.bundles)
                statement = statement.on_conflict_do_update(
                    index_elements=["catalog_id", "bundle_id"],
                    set_={
                        name: statement.excluded[name]
                        for name in ("name", "price", "discounted_price", "source", "attributes", "retired")
                    },
                )
                conn.execute(statement, chunk)
            ids = [b.bundle_id for b in bundles]
            for chunk in _chunks(ids):
                conn.execute(
                    delete(tables.bundle_items).where(
                        tables.bundle_items.c.catalog_id == catalog_id,
                        tables.bundle_items.c.bundle_id.in_(chunk),
                    )
                )
            for chunk in _chunks(members):
                conn.execute(insert(tables.bundle_items), chunk)
        self._mirror_bundles(catalog_id, bundles)

    def retire_items(self, catalog_id: str, item_ids: Sequence[str]) -> None:
        """Marks items retired: they stay in history but are never recommended again."""
        with self._engine.begin() as conn:
            conn.execute(
                update(tables.items)
                .where(tables.items.c.catalog_id == catalog_id, tables.items.c.item_id.in_(item_ids))
                .values(retired=True)
            )
        keys = self._keys.catalog(catalog_id)
        pipe = self._redis.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.hset(keys.item(item_id), "retired", "1")
        mark_changed(pipe, self._keys, catalog_id)
        pipe.execute()

    def mirror_from_postgres(self, catalog_id: str) -> None:
        """Rewrites the Redis mirror of one catalog from PostgreSQL (after Redis was lost)."""
        with self._engine.connect() as conn:
            # Items known only from events were never synced: live ingestion mirrors nothing for them.
            synced_items = select(tables.items).where(
                tables.items.c.catalog_id == catalog_id, tables.items.c.first_seen_in_event.is_(False)
            )
            item_rows = conn.execute(synced_items).mappings().all()
            bundle_rows = (
                conn.execute(select(tables.bundles).where(tables.bundles.c.catalog_id == catalog_id)).mappings().all()
            )
            member_rows = conn.execute(
                select(tables.bundle_items.c.bundle_id, tables.bundle_items.c.item_id)
                .where(tables.bundle_items.c.catalog_id == catalog_id)
                .order_by(tables.bundle_items.c.bundle_id, tables.bundle_items.c.position)
            ).all()
        members: dict[str, list[str]] = {}
        for bundle_id, item_id in member_rows:
            members.setdefault(bundle_id, []).append(item_id)
        self._mirror_items(
            catalog_id,
            [
                CatalogItem(
                    item_id=r["item_id"],
                    title=r["title"],
                    category_path=tuple(r["category_path"]),
                    price=r["price"],
                    image_url=r["image_url"],
                    attributes=r["attributes"],
                    retired=r["retired"],
                )
                for r in item_rows
            ],
        )
        self._mirror_bundles(
            catalog_id,
            [
                CatalogBundle(
                    bundle_id=r["bundle_id"],
                    name=r["name"],
                    item_ids=tuple(members.get(r["bundle_id"], [])),
                    price=r["price"],
                    discounted_price=r["discounted_price"],
                    source=r["source"],
                    attributes=r["attributes"],
                    retired=r["retired"],
                )
                for r in bundle_rows
            ],
        )

    def _mirror_items(self, catalog_id: str, items: Sequence[CatalogItem]) -> None:
        keys = self._keys.catalog(catalog_id)
        for chunk in _chunks(items):
            pipe = self._redis.pipeline(transaction=False)
            for item in chunk:
                pipe.hset(
                    keys.item(item.item_id),
                    mapping={
                        "title": item.title,
                        "category": " > ".join(item.category_path),
                        "affinity_category": affinity_category(item.category_path),
                        "price": _price_field(item.price),
                        "image_url": item.image_url,
                        "retired": "1" if item.retired else "0",
                    },
                )
            pipe.sadd(keys.catalog_items(), *(item.item_id for item in chunk))
            mark_changed(pipe, self._keys, catalog_id)
            pipe.execute()

    def _mirror_bundles(self, catalog_id: str, bundles: Sequence[CatalogBundle]) -> None:
        """Bundle hashes plus the item -> bundles and category -> bundles indexes of live bundles.

        Items are mirrored first (their categories index the bundles). A bundle whose items changed
        leaves the indexes of what it lost.
        """
        keys: CatalogKeys = self._keys.catalog(catalog_id)
        for chunk in _chunks(bundles, 500):
            lookup = self._redis.pipeline(transaction=False)
            for bundle in chunk:
                lookup.hget(keys.bundle(bundle.bundle_id), "items")
            old_items = [json.loads(raw) if raw else [] for raw in lookup.execute()]
            all_items = sorted({i for b in chunk for i in b.item_ids} | {i for old in old_items for i in old})
            for item_id in all_items:
                lookup.hget(keys.item(item_id), "affinity_category")
            category_of = {
                item_id: (raw.decode() if isinstance(raw, bytes) else raw) or ""
                for item_id, raw in zip(all_items, lookup.execute(), strict=True)
            }
            pipe = self._redis.pipeline(transaction=False)
            for bundle, old in zip(chunk, old_items, strict=True):
                for item_id in old:
                    pipe.srem(keys.item_bundles(item_id), bundle.bundle_id)
                for category in {category_of[i] for i in old} - {""}:
                    pipe.srem(keys.category_bundles(category), bundle.bundle_id)
                pipe.hset(
                    keys.bundle(bundle.bundle_id),
                    mapping={
                        "name": bundle.name,
                        "items": json.dumps(list(dict.fromkeys(bundle.item_ids))),
                        "price": _price_field(bundle.price),
                        "discounted_price": _price_field(bundle.discounted_price),
                        "source": bundle.source,
                        "retired": "1" if bundle.retired else "0",
                    },
                )
                if bundle.retired:
                    pipe.srem(keys.live_bundles(), bundle.bundle_id)
                    continue
                pipe.sadd(keys.live_bundles(), bundle.bundle_id)
                for item_id in bundle.item_ids:
                    pipe.sadd(keys.item_bundles(item_id), bundle.bundle_id)
                for category in {category_of[i] for i in bundle.item_ids} - {""}:
                    pipe.sadd(keys.category_bundles(category), bundle.bundle_id)
            mark_changed(pipe, self._keys, catalog_id)
            pipe.execute()
