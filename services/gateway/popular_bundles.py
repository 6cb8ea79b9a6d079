"""Popular bundles from the feature store's Redis: what the gateway answers when the ranker cannot.

Per catalog, the :data:`LIST_SIZE` most bought live bundles (``bundle_pop``, topped up with other
live bundles) are read with their items and kept in memory, re-read every ``refresh_s`` in the
background. Serving one answer costs two Redis round trips: the shopper's favourite category (their
segment: bundles holding an item of it come first), then the live flags of the candidates and of
their items, so a bundle or item retired a moment ago is never shown even from an older list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis.asyncio
import redis.exceptions

from services.gateway.domain import NO_CONSTRAINTS, BundleConstraints, BundleItem, RankedBundle, Recommendation
from shared.store.redis_keys import CatalogKeys, NamespaceKeys

log = logging.getLogger(__name__)

LIST_SIZE = 200
MODEL_VERSION = "popular-fallback"
_ITEM_FIELDS = ("title", "price", "image_url", "affinity_category", "retired")


@dataclass(frozen=True, slots=True)
class PopularBundle:
    bundle_id: str
    name: str
    items: tuple[BundleItem, ...]
    categories: frozenset[str]
    purchases: float
    price: float | None
    discounted_price: float | None

    @property
    def total_price(self) -> float | None:
        """What the shopper pays, as the ranker says it: discounted, else the bundle's, else the items' sum."""
        if self.discounted_price is not None:
            return self.discounted_price
        if self.price is not None:
            return self.price
        prices = [item.price for item in self.items]
        return None if not prices or None in prices else float(sum(p for p in prices if p is not None))

    def allowed_by(self, constraints: BundleConstraints) -> bool:
        size = len(self.items)
        if (constraints.min_items and size < constraints.min_items) or (
            constraints.max_items and size > constraints.max_items
        ):
            return False
        if constraints.max_total_price is not None:
            total = self.total_price
            return total is not None and total <= constraints.max_total_price
        return True


def _price(raw: str | None) -> float | None:
    return float(raw) if raw else None


class RedisPopularBundles:
    """:class:`~services.gateway.ports.PopularBundles` over the feature store's Redis."""

    def __init__(self, redis_url: str, namespace: str, *, refresh_s: float, timeout_s: float = 1.0) -> None:
        self._redis = redis.asyncio.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
        self._keys = NamespaceKeys(namespace)
        self._refresh_s = refresh_s
        self._lists: dict[str, tuple[PopularBundle, ...]] = {}
        self._loading: dict[str, asyncio.Future[tuple[PopularBundle, ...]]] = {}
        self._refresher: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts re-reading the lists already asked for every ``refresh_s``; call on the event loop."""
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_forever(), name="popular-bundles-refresh")

    async def recommend(
        self, *, catalog_id: str, user_id: str, k: int, constraints: BundleConstraints = NO_CONSTRAINTS
    ) -> Recommendation | None:
        keys = self._keys.catalog(catalog_id)
        try:
            popular = self._lists.get(catalog_id)
            if popular is None:
                popular = await self._load_once(catalog_id)
            if not popular:
                return None
            favourite = await self._redis.zrevrange(keys.user_categories(user_id), 0, 0)
            segment = favourite[0] if favourite else None
            allowed = [b for b in popular if b.allowed_by(constraints)]
            ordered = [b for b in allowed if segment in b.categories] + [
                b for b in allowed if segment not in b.categories
            ]
            servable = await self._still_live(keys, ordered[: max(4 * k, 40)])
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("popular bundles of %s cannot be read: %s: %s", catalog_id, type(exc).__name__, exc)
            return None
        chosen = servable[:k]
        return Recommendation(
            bundles=tuple(
                RankedBundle(
                    bundle_id=b.bundle_id,
                    name=b.name,
                    items=b.items,
                    score=b.purchases,
                    total_price=b.total_price,
                    discounted_price=b.discounted_price,
                    explanation=f"Popular in {segment}" if segment in b.categories else "Popular in this shop",
                    source="catalog",
                    propensity=1.0,
                )
                for b in chosen
            ),
            model_version=MODEL_VERSION,
            policy_version="",
            cold_start=segment is None,
        )

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self._redis.aclose()

    async def _still_live(self, keys: CatalogKeys, candidates: Sequence[PopularBundle]) -> list[PopularBundle]:
        """``candidates`` that are live now and hold no retired item, in order."""
        if not candidates:
            return []
        item_ids = sorted({item.item_id for b in candidates for item in b.items})
        pipe = self._redis.pipeline(transaction=False)
        pipe.smismember(keys.live_bundles(), [b.bundle_id for b in candidates])
        for item_id in item_ids:
            pipe.hget(keys.item(item_id), "retired")
        live_flags, *retired_flags = await pipe.execute()
        retired = {item_id for item_id, flag in zip(item_ids, retired_flags, strict=True) if flag == "1"}
        return [
            bundle
            for bundle, live in zip(candidates, live_flags, strict=True)
            if live and not any(item.item_id in retired for item in bundle.items)
        ]

    async def _load_once(self, catalog_id: str) -> tuple[PopularBundle, ...]:
        """:meth:`_load`, shared by the requests that need the same list at once (when the ranker
        goes down, every request falls back together)."""
        loading = self._loading.get(catalog_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(catalog_id))
            self._loading[catalog_id] = loading
            loading.add_done_callback(lambda _: self._loading.pop(catalog_id, None))
        return await asyncio.shield(loading)

    async def _load(self, catalog_id: str) -> tuple[PopularBundle, ...]:
        """Reads the catalog's list from Redis; keeps it unless empty (an unknown catalog costs no memory)."""
        keys = self._keys.catalog(catalog_id)
        # The client decodes responses, so members are str (redis-py's stubs cannot know that).
        scored: list[tuple[str, float]] = await self._redis.zrevrange(  # type: ignore[assignment]
            keys.bundle_popularity(), 0, 4 * LIST_SIZE - 1, withscores=True
        )
        live_flags = await self._redis.smismember(keys.live_bundles(), [b for b, _ in scored]) if scored else []
        purchases = {b: s for (b, s), live in zip(scored, live_flags, strict=True) if live}
        ids = list(purchases)[:LIST_SIZE]
        if len(ids) < LIST_SIZE:
            live: set[str] = await self._redis.smembers(keys.live_bundles())  # type: ignore[assignment]
            others = sorted(live - set(ids))
            ids += others[: LIST_SIZE - len(ids)]
        pipe = self._redis.pipeline(transaction=False)
        for bundle_id in ids:
            pipe.hgetall(keys.bundle(bundle_id))
        bundle_fields: list[dict[str, str]] = await pipe.execute()
        members = {b: json.loads(fields.get("items", "[]")) for b, fields in zip(ids, bundle_fields, strict=True)}
        item_ids = sorted({i for items in members.values() for i in items})
        pipe = self._redis.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.hmget(keys.item(item_id), list(_ITEM_FIELDS))
        items = {
            i: dict(zip(_ITEM_FIELDS, values, strict=True))
            for i, values in zip(item_ids, await pipe.execute(), strict=True)
        }
        popular = tuple(
            self._bundle(bundle_id, fields, members[bundle_id], items, purchases.get(bundle_id, 0.0))
            for bundle_id, fields in zip(ids, bundle_fields, strict=True)
            if fields and members[bundle_id]
        )
        if popular:
            self._lists[catalog_id] = popular
        return popular

    @staticmethod
    def _bundle(
        bundle_id: str,
        fields: Mapping[str, str],
        member_ids: Sequence[str],
        items: Mapping[str, Mapping[str, str | None]],
        purchases: float,
    ) -> PopularBundle:
        return PopularBundle(
            bundle_id=bundle_id,
            name=fields.get("name", ""),
            items=tuple(
                BundleItem(
                    item_id=item_id,
                    title=items[item_id].get("title") or "",
                    price=_price(items[item_id].get("price")),
                    image_url=items[item_id].get("image_url") or None,
                )
                for item_id in member_ids
            ),
            categories=frozenset(c for i in member_ids if (c := items[i].get("affinity_category"))),
            purchases=purchases,
            price=_price(fields.get("price")),
            discounted_price=_price(fields.get("discounted_price")),
        )

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            for catalog_id in list(self._lists):
                try:
                    await self._load(catalog_id)
                except (redis.exceptions.RedisError, OSError) as exc:
                    log.warning("cannot refresh the popular bundles of %s: %s", catalog_id, exc)
