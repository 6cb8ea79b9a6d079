"""The FeatureStore gRPC servicer: validates requests and delegates to :class:`FeatureReader`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import grpc
from bundlewise.featurestore.v1 import featurestore_pb2 as pb
from bundlewise.featurestore.v1 import featurestore_pb2_grpc

from services.featurestore.reads import MAX_IDS_PER_REQUEST, FeatureReader
from services.featurestore.settings import FeatureStoreSettings
from shared.errors import InvalidArgument, NotFound
from shared.store.redis_keys import USER_RECENT_ITEMS_CAP

MAX_WINDOW_DAYS = 365


def _check(catalog_id: str, ids: Sequence[str], what: str) -> None:
    if not catalog_id:
        raise InvalidArgument("catalog_id is required")
    if len(ids) > MAX_IDS_PER_REQUEST:
        raise InvalidArgument(f"at most {MAX_IDS_PER_REQUEST} {what} per request, got {len(ids)}")
    if any(not i for i in ids):
        raise InvalidArgument(f"{what} must not be empty strings")


class FeatureStoreServicer(featurestore_pb2_grpc.FeatureStoreServicer):
    def __init__(self, reader: FeatureReader, settings: FeatureStoreSettings) -> None:
        self._reader = reader
        self._settings = settings

    def GetUserFeatures(
        self, request: pb.GetUserFeaturesRequest, context: grpc.ServicerContext
    ) -> pb.GetUserFeaturesResponse:
        _check(request.catalog_id, request.user_ids, "user_ids")
        limit = min(request.max_recent_items or self._settings.default_recent_items, USER_RECENT_ITEMS_CAP)
        return pb.GetUserFeaturesResponse(users=self._reader.user_features(request.catalog_id, request.user_ids, limit))

    def GetItems(self, request: pb.GetItemsRequest, context: grpc.ServicerContext) -> pb.GetItemsResponse:
        _check(request.catalog_id, request.item_ids, "item_ids")
        return pb.GetItemsResponse(items=self._reader.items(request.catalog_id, request.item_ids))

    def GetItemNeighbours(
        self, request: pb.GetItemNeighboursRequest, context: grpc.ServicerContext
    ) -> pb.GetItemNeighboursResponse:
        _check(request.catalog_id, request.item_ids, "item_ids")
        k = min(request.k or self._settings.default_neighbours, 200)
        return pb.GetItemNeighboursResponse(items=self._reader.neighbours(request.catalog_id, request.item_ids, k))

    def GetBundlesForItems(
        self, request: pb.GetBundlesForItemsRequest, context: grpc.ServicerContext
    ) -> pb.GetBundlesForItemsResponse:
        _check(request.catalog_id, request.item_ids, "item_ids")
        limit = request.max_bundles_per_item or self._settings.default_bundles_per_item
        return pb.GetBundlesForItemsResponse(
            items=self._reader.bundles_for_items(request.catalog_id, request.item_ids, limit)
        )

    def GetBundlesForCategories(
        self, request: pb.GetBundlesForCategoriesRequest, context: grpc.ServicerContext
    ) -> pb.GetBundlesForCategoriesResponse:
        _check(request.catalog_id, request.categories, "categories")
        limit = request.max_bundles_per_category or self._settings.default_bundles_per_item
        return pb.GetBundlesForCategoriesResponse(
            categories=self._reader.bundles_for_categories(request.catalog_id, request.categories, limit)
        )

    def GetBundles(self, request: pb.GetBundlesRequest, context: grpc.ServicerContext) -> pb.GetBundlesResponse:
        _check(request.catalog_id, request.bundle_ids, "bundle_ids")
        return pb.GetBundlesResponse(bundles=self._reader.bundles(request.catalog_id, request.bundle_ids))

    def GetPopularBundles(
        self, request: pb.GetPopularBundlesRequest, context: grpc.ServicerContext
    ) -> pb.GetPopularBundlesResponse:
        _check(request.catalog_id, [], "bundle_ids")
        if not 1 <= request.k <= 1000:
            raise InvalidArgument(f"k must be between 1 and 1000, got {request.k}")
        if not self._reader.catalog_is_live(request.catalog_id):
            raise NotFound(
                f"catalog {request.catalog_id!r} has no live bundles; load it with `bundlewise load-catalogs`"
            )
        return pb.GetPopularBundlesResponse(bundles=self._reader.popular_bundles(request.catalog_id, request.k))

    def GetPopularItems(
        self, request: pb.GetPopularItemsRequest, context: grpc.ServicerContext
    ) -> pb.GetPopularItemsResponse:
        _check(request.catalog_id, [], "item_ids")
        days = request.days or self._settings.default_popularity_days
        if days > MAX_WINDOW_DAYS:
            raise InvalidArgument(f"days must be at most {MAX_WINDOW_DAYS}, got {days}")
        try:
            last_day = date.fromisoformat(request.as_of_day) if request.as_of_day else self._today()
        except ValueError:
            raise InvalidArgument(f"as_of_day must be YYYY-MM-DD, got {request.as_of_day!r}") from None
        k = min(request.k or 10, MAX_IDS_PER_REQUEST)
        return pb.GetPopularItemsResponse(
            items=self._reader.popular_items(request.catalog_id, k, last_day, days),
            first_day=(last_day - timedelta(days=days - 1)).isoformat(),
            last_day=last_day.isoformat(),
        )

    def _today(self) -> date:
        return self._settings.feature_clock or datetime.now(UTC).date()
