"""Batch reads of the online features, answered as the feature store's wire messages.

Redis is read through :mod:`shared.store.feature_reads` (as the ranker reads it), in one round trip
per request unless a read says otherwise. Every list keeps the order of the ids asked for, and an
unknown id yields ``found = False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import redis
from bundlewise.featurestore.v1 import featurestore_pb2 as pb

from shared.store import feature_reads
from shared.store.feature_reads import FeatureReadBatch, StoredBundle, StoredItem
from shared.store.redis_keys import CatalogKeys, NamespaceKeys

MAX_IDS_PER_REQUEST = 1000
TOP_CATEGORIES = 10


class FeatureReader:
    """The feature store's reads of one namespace; ``redis_client`` must decode responses."""

    def __init__(self, redis_client: redis.Redis, namespace: str) -> None:
        self._redis = redis_client
        self._keys = NamespaceKeys(namespace)

    def _catalog(self, catalog_id: str) -> CatalogKeys:
        return self._keys.catalog(catalog_id)

    def _batch(self, catalog_id: str) -> FeatureReadBatch:
        return FeatureReadBatch(self._redis, self._catalog(catalog_id))

    def catalog_is_live(self, catalog_id: str) -> bool:
        """True when the catalog has at least one live bundle."""
        batch = self._batch(catalog_id)
        live = batch.has_live_bundles()
        batch.run()
        return live.value

    def user_features(self, catalog_id: str, user_ids: Sequence[str], max_recent: int) -> list[pb.UserFeatures]:
        """Each user's features, in the order of ``user_ids``: at most ``max_recent`` recent items,
        the top :data:`TOP_CATEGORIES` categories, bought and clicked bundles in id order, and the
        looks at each bundle shown to them. One round trip."""
        batch = self._batch(catalog_id)
        replies = [
            (
                user_id,
                batch.recent_items(user_id, max_recent),
                batch.category_affinity(user_id, TOP_CATEGORIES),
                batch.purchased_bundles(user_id),
                batch.bundle_feedback(user_id),
            )
            for user_id in user_ids
        ]
        batch.run()
        return [
            pb.UserFeatures(
                user_id=user_id,
                found=bool(
                    recent.value or categories.value or bought.value or feedback.value.looks or feedback.value.clicked
                ),
                recent_item_ids=recent.value,
                category_affinity=[pb.ScoredId(id=c, score=s) for c, s in categories.value],
                purchased_bundle_ids=sorted(bought.value),
                bundle_looks=feedback.value.looks,
                clicked_bundle_ids=sorted(feedback.value.clicked),
            )
            for user_id, recent, categories, bought, feedback in replies
        ]

    def items(self, catalog_id: str, item_ids: Sequence[str]) -> list[pb.Item]:
        batch = self._batch(catalog_id)
        found = batch.items(item_ids)
        batch.run()
        return [_item_message(item_id, found.value.get(item_id)) for item_id in item_ids]

    def neighbours(self, catalog_id: str, item_ids: Sequence[str], k: int) -> list[pb.ItemNeighbours]:
        batch = self._batch(catalog_id)
        neighbours = batch.neighbours(item_ids, k)
        batch.run()
        return [
            pb.ItemNeighbours(
                item_id=item_id, neighbours=[pb.ScoredId(id=n, score=s) for n, s in neighbours.value[item_id]]
            )
            for item_id in item_ids
        ]

    def bundles_for_items(self, catalog_id: str, item_ids: Sequence[str], max_per_item: int) -> list[pb.BundlesForItem]:
        batch = self._batch(catalog_id)
        bundles = batch.bundles_of_items(item_ids)
        batch.run()
        return [
            pb.BundlesForItem(item_id=item_id, bundle_ids=bundles.value[item_id][:max_per_item]) for item_id in item_ids
        ]

    def bundles_for_categories(
        self, catalog_id: str, categories: Sequence[str], max_per_category: int
    ) -> list[pb.BundlesForCategory]:
        """For each category, its live bundles by purchases (most first), then by id."""
        ranked = feature_reads.most_bought_bundles_by_category(
            self._redis, self._catalog(catalog_id), categories, max_per_category
        )
        return [pb.BundlesForCategory(category=category, bundle_ids=ranked[category]) for category in categories]

    def bundles(self, catalog_id: str, bundle_ids: Sequence[str]) -> list[pb.Bundle]:
        batch = self._batch(catalog_id)
        found = batch.bundles(bundle_ids)
        stats = batch.bundle_stats(bundle_ids)
        batch.run()
        result = []
        for bundle_id in bundle_ids:
            bundle = _bundle_message(bundle_id, found.value.get(bundle_id))
            counts = stats.value[bundle_id]
            bundle.stats.impressions = counts.impressions
            bundle.stats.clicks = counts.clicks
            bundle.stats.purchases = counts.purchases
            result.append(bundle)
        return result

    def popular_bundles(self, catalog_id: str, k: int) -> list[pb.ScoredId]:
        """Live bundles by purchases, best first; topped up with other live bundles (in id order)."""
        popular = feature_reads.popular_bundles(self._redis, self._catalog(catalog_id), k)
        return [pb.ScoredId(id=b, score=purchases) for b, purchases in popular]

    def popular_items(self, catalog_id: str, k: int, last_day: date, days: int) -> list[pb.ScoredId]:
        """Items by weighted interactions over ``days`` days of event time ending on ``last_day``,
        highest first (ties by id): one ZUNION of the per-day counts ingestion keeps."""
        top = feature_reads.popular_items(self._redis, self._catalog(catalog_id), k, last_day, days)
        return [pb.ScoredId(id=item_id, score=score) for item_id, score in top]


def _item_message(item_id: str, item: StoredItem | None) -> pb.Item:
    message = pb.Item(item_id=item_id, found=item is not None)
    if item is not None:
        message.title = item.title
        message.category_path.extend(item.category_path)
        if item.price is not None:
            message.price = item.price
        message.image_url = item.image_url
        message.retired = item.retired
    return message


def _bundle_message(bundle_id: str, bundle: StoredBundle | None) -> pb.Bundle:
    message = pb.Bundle(bundle_id=bundle_id, found=bundle is not None)
    if bundle is not None:
        message.name = bundle.name
        message.item_ids.extend(bundle.item_ids)
        if bundle.price is not None:
            message.price = bundle.price
        if bundle.discounted_price is not None:
            message.discounted_price = bundle.discounted_price
        message.retired = bundle.retired
    return message
