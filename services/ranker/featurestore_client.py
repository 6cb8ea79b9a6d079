"""FeatureSource over the feature store's gRPC API; every call has a deadline."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import grpc
from bundlewise.featurestore.v1 import featurestore_pb2 as pb
from bundlewise.featurestore.v1 import featurestore_pb2_grpc

from services.ranker.domain import RECENT_ITEMS, BundleInfo, ItemInfo, UserSignals
from shared.errors import from_rpc_error
from shared.store.redis_keys import USER_RECENT_ITEMS_CAP

Reply = TypeVar("Reply")
# The feature store takes at most this many ids per request (see featurestore.proto).
MAX_IDS_PER_REQUEST = 1000
# Candidates taken from each of a shopper's favourite categories.
CATEGORY_CANDIDATES = 30


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[start : start + MAX_IDS_PER_REQUEST] for start in range(0, len(ids), MAX_IDS_PER_REQUEST)]


class GrpcFeatureSource:
    def __init__(self, channel: grpc.Channel, timeout_s: float) -> None:
        self._stub = featurestore_pb2_grpc.FeatureStoreStub(channel)
        self._timeout_s = timeout_s

    def _call(self, method: Callable[..., Reply], request: object) -> Reply:
        try:
            return method(request, timeout=self._timeout_s)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, "featurestore") from None

    def settle_catalog(self, catalog_id: str) -> None:
        """Nothing to do: every read goes to the feature store, which always answers as of now."""

    def user_signals(self, catalog_id: str, user_id: str) -> UserSignals:
        reply = self._call(
            self._stub.GetUserFeatures,
            pb.GetUserFeaturesRequest(
                catalog_id=catalog_id, user_ids=[user_id], max_recent_items=USER_RECENT_ITEMS_CAP
            ),
        )
        user = reply.users[0]
        return UserSignals(
            recent_item_ids=tuple(user.recent_item_ids[:RECENT_ITEMS]),
            purchased_bundle_ids=frozenset(user.purchased_bundle_ids),
            top_categories=tuple(c.id for c in user.category_affinity[:3]),
            bundle_looks=dict(user.bundle_looks),
            clicked_bundle_ids=frozenset(user.clicked_bundle_ids),
            history_item_ids=tuple(user.recent_item_ids),
        )

    def neighbours(self, catalog_id: str, item_ids: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
        if not item_ids:
            return {}
        return {
            entry.item_id: [(n.id, n.score) for n in entry.neighbours]
            for chunk in _chunks(item_ids)
            for entry in self._call(
                self._stub.GetItemNeighbours, pb.GetItemNeighboursRequest(catalog_id=catalog_id, item_ids=chunk)
            ).items
        }

    def bundles_by_item(self, catalog_id: str, item_ids: Sequence[str]) -> dict[str, list[str]]:
        if not item_ids:
            return {}
        return {
            entry.item_id: list(entry.bundle_ids)
            for chunk in _chunks(item_ids)
            for entry in self._call(
                self._stub.GetBundlesForItems, pb.GetBundlesForItemsRequest(catalog_id=catalog_id, item_ids=chunk)
            ).items
        }

    def bundles_by_category(self, catalog_id: str, categories: Sequence[str]) -> dict[str, list[str]]:
        if not categories:
            return {}
        reply = self._call(
            self._stub.GetBundlesForCategories,
            pb.GetBundlesForCategoriesRequest(
                catalog_id=catalog_id, categories=categories, max_bundles_per_category=CATEGORY_CANDIDATES
            ),
        )
        return {entry.category: list(entry.bundle_ids) for entry in reply.categories}

    def bundles(self, catalog_id: str, bundle_ids: Sequence[str]) -> dict[str, BundleInfo]:
        if not bundle_ids:
            return {}
        replies = [
            self._call(self._stub.GetBundles, pb.GetBundlesRequest(catalog_id=catalog_id, bundle_ids=chunk))
            for chunk in _chunks(bundle_ids)
        ]
        return {
            b.bundle_id: BundleInfo(
                bundle_id=b.bundle_id,
                name=b.name,
                item_ids=tuple(b.item_ids),
                price=b.price if b.HasField("price") else None,
                discounted_price=b.discounted_price if b.HasField("discounted_price") else None,
                retired=b.retired,
                purchases=b.stats.purchases,
            )
            for reply in replies
            for b in reply.bundles
            if b.found
        }

    def items(self, catalog_id: str, item_ids: Sequence[str]) -> dict[str, ItemInfo]:
        if not item_ids:
            return {}
        replies = [
            self._call(self._stub.GetItems, pb.GetItemsRequest(catalog_id=catalog_id, item_ids=chunk))
            for chunk in _chunks(item_ids)
        ]
        return {
            i.item_id: ItemInfo(
                item_id=i.item_id,
                title=i.title,
                price=i.price if i.HasField("price") else None,
                image_url=i.image_url,
                retired=i.retired,
                category_path=tuple(i.category_path),
            )
            for reply in replies
            for i in reply.items
            if i.found
        }

    def popular_bundles(self, catalog_id: str, k: int) -> list[str]:
        reply = self._call(self._stub.GetPopularBundles, pb.GetPopularBundlesRequest(catalog_id=catalog_id, k=k))
        return [b.id for b in reply.bundles]
