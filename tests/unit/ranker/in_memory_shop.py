"""An in-memory ``FeatureSource`` for recommender specifications: one catalog's bundles and items, and
the signals of whichever shopper asks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from services.ranker.domain import BundleInfo, ItemInfo, UserSignals
from services.ranker.ports import LiveBundles


@dataclass(frozen=True)
class InMemoryShop:
    """``catalog_bundles`` and ``catalog_items`` by id; ``signals`` for every shopper; ``co_purchases``
    the item neighbours; the popular bundles are the most bought first (ties in the given order)."""

    catalog_bundles: Mapping[str, BundleInfo]
    catalog_items: Mapping[str, ItemInfo]
    signals: UserSignals
    co_purchases: Mapping[str, list[tuple[str, float]]] = field(default_factory=dict)

    def settle_catalog(self, catalog_id: str) -> None:
        pass

    def user_signals(self, catalog_id: str, user_id: str) -> UserSignals:
        return self.signals

    def neighbours(self, catalog_id: str, item_ids: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
        return dict(self.co_purchases)

    def bundles_by_item(self, catalog_id: str, item_ids: Sequence[str]) -> dict[str, list[str]]:
        return {i: [b for b, bundle in self.catalog_bundles.items() if i in bundle.item_ids] for i in item_ids}

    def bundles_by_category(self, catalog_id: str, categories: Sequence[str]) -> dict[str, list[str]]:
        return {}

    def bundles(self, catalog_id: str, bundle_ids: Sequence[str]) -> dict[str, BundleInfo]:
        return {b: self.catalog_bundles[b] for b in bundle_ids if b in self.catalog_bundles}

    def items(self, catalog_id: str, item_ids: Sequence[str]) -> dict[str, ItemInfo]:
        return {i: self.catalog_items[i] for i in item_ids if i in self.catalog_items}

    def live_bundles(self, catalog_id: str) -> LiveBundles:
        return LiveBundles(("copy", id(self.catalog_bundles)), self.catalog_bundles)

    def popular_bundles(self, catalog_id: str, k: int) -> list[str]:
        return sorted(self.catalog_bundles, key=lambda b: -self.catalog_bundles[b].purchases)[:k]
