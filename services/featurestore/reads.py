"""Batch reads of the online features, one Redis pipeline per request.

The feature store's answers are its wire messages, so reads build them directly; every list keeps
the order of the ids asked for, and an unknown id yields ``found = False``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, timedelta

import redis
from bundlewise.featurestore.v1 import featurestore_pb2 as pb

from shared.store.redis_keys import CatalogKeys, NamespaceKeys

MAX_IDS_PER_REQUEST = 1000


def _optional_price(raw: str | None) -> float | None:
    return float(raw) if raw else None


class FeatureReader:
    def __init__(self, redis_client: redis.Redis, namespace: str) -> None:
        self._redis = redis_client
        self._keys = NamespaceKeys(namespace)

    def _catalog(self, catalog_id: str) -> CatalogKeys:
        return self._keys.catalog(catalog_id)

    def catalog_is_live(self, catalog_id: str) -> bool:
        """True when the catalog has at least one live bundle."""
        return bool(self._redis.exists(self._catalog(catalog_id).live_bundles()))

    def user_features(self, catalog_id: str, user_ids: Sequence[str], max_recent: int) -> list[pb.UserFeatures]:
        keys = self._catalog(catalog_id)
        pipe = self._redis.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.zrevrange(keys.user_recent_items(user_id), 0, max_recent - 1)
            pipe.zrevrange(keys.user_categories(user_id), 0, 9, withscores=True)
            pipe.smembers(keys.user_bundles(user_id))
        replies = pipe.execute()
        users = []
        for index, user_id in enumerate(user_ids):
            recent, categories, bought = replies[3 * index : 3 * index + 3]
            users.append(
                pb.UserFeatures(
                    user_id=user_id,
                    found=bool(recent or categories or bought),
                    recent_item_ids=recent,
                    category_affinity=[pb.ScoredId(id=c, score=s) for c, s in categories],
                    purchased_bundle_ids=sorted(bought),
                )
            )
        return users

    def items(self, catalog_id: str, item_ids: Sequence[str]) -> list[pb.Item]:
        keys = self._catalog(catalog_id)
        pipe = self._redis.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.hgetall(keys.item(item_id))
        result = []
        for item_id, fields in zip(item_ids, pipe.execute(), strict=True):
            item = pb.Item(item_id=item_id, found=bool(fields))
            if fields:
                item.title = fields.get("title", "")
                category = fields.get("category", "")
                item.category_path.extend(category.split(" > ") if category else [])
                price = _optional_price(fields.get("price"))
                if price is not None:
                    item.price = price
                item.image_url = fields.get("image_url", "")
                item.retired = fields.get("retired") == "1"
            result.append(item)
        return result

    def neighbours(self, catalog_id: str, item_ids: Sequence[str], k: int) -> list[pb.ItemNeighbours]:
        keys = self._catalog(catalog_id)
        pipe = self._redis.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.zrevrange(keys.item_neighbours(item_id), 0, k - 1, withscores=True)
        return [
            pb.ItemNeighbours(item_id=item_id, neighbours=[pb.ScoredId(id=n, score=s) for n, s in scored])
            for item_id, scored in zip(item_ids, pipe.execute(), strict=True)
        ]

    def bundles_for_items(self, catalog_id: str, item_ids: Sequence[str], max_per_item: int) -> list[pb.BundlesForItem]:
        keys = self._catalog(catalog_id)
        pipe = self._redis.pipeline(transaction=False)
        for item_id in item_ids:
            pipe.smembers(keys.item_bundles(item_id))
        return [
            pb.BundlesForItem(item_id=item_id, bundle_ids=sorted(members)[:max_per_item])
            for item_id, members in zip(item_ids, pipe.execute(), strict=True)
        ]

    def bundles_for_categories(
        self, catalog_id: str, categories: Sequence[str], max_per_category: int
    ) -> list[pb.BundlesForCategory]:
        """For each category, its live bundles by purchases (most first), then by id."""
        keys = self._catalog(catalog_id)
        pipe = self._redis.pipeline(transaction=False)
        for category in categories:
            pipe.smembers(keys.category_bundles(category))
        members: list[list[str]] = [sorted(m) for m in pipe.execute()]
        everyone = sorted({b for bundle_ids in members for b in bundle_ids})
        bought = (
            dict(zip(everyone, self._redis.zmscore(keys.bundle_popularity(), everyone), strict=True))
            if everyone
            else {}
        )
        return [
            pb.BundlesForCategory(
                category=category,
                bundle_ids=sorted(bundle_ids, key=lambda b: (-(bought.get(b) or 0.0), b))[:max_per_category],
            )
            for category, bundle_ids in zip(categories, members, strict=True)
        ]

    def bundles(self, catalog_id: str, bundle_ids: Sequence[str]) -> list[pb.Bundle]:
        keys = self._catalog(catalog_id)
        pipe = self._redis.pipeline(transaction=False)
        for bundle_id in bundle_ids:
            pipe.hgetall(keys.bundle(bundle_id))
            pipe.hgetall(keys.bundle_stats(bundle_id))
        replies = pipe.execute()
        result = []
        for index, bundle_id in enumerate(bundle_ids):
            fields, stats = replies[2 * index], replies[2 * index + 1]
            bundle = pb.Bundle(bundle_id=bundle_id, found=bool(fields))
            if fields:
                bundle.name = fields.get("name", "")
                bundle.item_ids.extend(json.loads(fields.get("items", "[]")))
                price = _optional_price(fields.get("price"))
                if price is not None:
                    bundle.price = price
                discounted = _optional_price(fields.get("discounted_price"))
                if discounted is not None:
                    bundle.discounted_price = discounted
                bundle.retired = fields.get("retired") == "1"
            bundle.stats.impressions = int(stats.get("impressions", 0))
            bundle.stats.clicks = int(stats.get("clicks", 0))
            bundle.stats.purchases = int(stats.get("purchases", 0))
            result.append(bundle)
        return result

    def popular_bundles(self, catalog_id: str, k: int) -> list[pb.ScoredId]:
        """Live bundles by purchases, best first; topped up with other live bundles (in id order)."""
        keys = self._catalog(catalog_id)
        # The client decodes responses, so members are str (redis-py's stubs cannot know that).
        scored: list[tuple[str, float]] = list(
            self._redis.zrevrange(keys.bundle_popularity(), 0, 4 * k - 1, withscores=True)  # type: ignore[arg-type]
        )
        live_flags = self._redis.smismember(keys.live_bundles(), [b for b, _ in scored]) if scored else []
        result = [pb.ScoredId(id=b, score=s) for (b, s), live in zip(scored, live_flags, strict=True) if live][:k]
        if len(result) < k:
            taken = {r.id for r in result}
            live: set[str] = self._redis.smembers(keys.live_bundles())  # type: ignore[assignment]
            for bundle_id in sorted(live):
                if len(result) >= k:
                    break
                if bundle_id not in taken:
                    result.append(pb.ScoredId(id=bundle_id, score=0.0))
        return result

    def popular_items(self, catalog_id: str, k: int, last_day: date, days: int) -> list[pb.ScoredId]:
        """Items by weighted interactions over ``days`` days of event time ending on ``last_day``,
        highest first (ties by id): one ZUNION of the per-day counts ingestion keeps."""
        keys = self._catalog(catalog_id)
        day_keys = [keys.item_popularity_day(f"{last_day - timedelta(days=n):%Y%m%d}") for n in range(days)]
        counts: list[tuple[str, float]] = self._redis.zunion(day_keys, withscores=True)  # type: ignore[assignment]
        top = sorted(counts, key=lambda pair: (-pair[1], pair[0]))[:k]
        return [pb.ScoredId(id=item_id, score=score) for item_id, score in top]
