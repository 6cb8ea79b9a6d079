"""The Ranker gRPC servicer: proto in, domain call, proto out."""

from __future__ import annotations

import grpc
from bundlewise.ranker.v1 import ranker_pb2 as pb
from bundlewise.ranker.v1 import ranker_pb2_grpc

from services.ranker import metrics
from services.ranker.domain import Constraints
from services.ranker.recommender import Recommender
from services.ranker.search import MAX_QUERY_CHARS, BundleSearch, SearchNotConfigured
from shared.errors import InvalidArgument

MAX_K = 100
MAX_ANCHORS = 50


class RankerServicer(ranker_pb2_grpc.RankerServicer):
    def __init__(
        self, recommender: Recommender, search: BundleSearch | None = None, search_off_reason: str = ""
    ) -> None:
        """Without ``search``, SearchBundles answers UNIMPLEMENTED with ``search_off_reason``."""
        self._recommender = recommender
        self._search = search
        self._search_off_reason = search_off_reason or "bundle search is not configured on this ranker"

    def RecommendBundles(
        self, request: pb.RecommendBundlesRequest, context: grpc.ServicerContext
    ) -> pb.RecommendBundlesResponse:
        if not request.catalog_id or not request.user_id:
            raise InvalidArgument("catalog_id and user_id are required")
        if not 1 <= request.k <= MAX_K:
            raise InvalidArgument(f"k must be between 1 and {MAX_K}, got {request.k}")
        if len(request.anchor_item_ids) > MAX_ANCHORS:
            raise InvalidArgument(f"at most {MAX_ANCHORS} anchor items, got {len(request.anchor_item_ids)}")
        c = request.constraints
        constraints = Constraints(
            max_total_price=c.max_total_price if c.HasField("max_total_price") else None,
            min_items=c.min_items,
            max_items=c.max_items,
        )
        result = self._recommender.recommend(
            request.catalog_id,
            request.user_id,
            request.k,
            anchor_item_ids=list(request.anchor_item_ids),
            constraints=constraints,
            request_id=request.request_id,
        )
        metrics.RECOMMENDATIONS.labels("cold" if result.cold_start else "warm").inc()
        metrics.POLICY_VERSION.labels(request.catalog_id).set(result.policy_version)
        if result.shadow_policy is not None:
            metrics.SHADOW_ANSWERS.labels(request.catalog_id, result.shadow_policy).inc()
            for bundle in result.bundles:
                metrics.SHADOW_PROPENSITY.labels(request.catalog_id).observe(bundle.shadow_propensity or 0.0)
        reply = pb.RecommendBundlesResponse(
            model_version=result.model_version,
            policy_version=str(result.policy_version),
            cold_start=result.cold_start,
            shadow_policy=result.shadow_policy or "",
        )
        for r in result.bundles:
            ranked = reply.bundles.add(
                bundle_id=r.bundle.bundle_id,
                name=r.bundle.name,
                score=r.score,
                explanation=r.explanation,
                propensity=r.propensity,
                source=r.bundle.source,
            )
            for item in r.items:
                entry = ranked.items.add(item_id=item.item_id, title=item.title, image_url=item.image_url)
                if item.price is not None:
                    entry.price = item.price
            if r.total_price is not None:
                ranked.total_price = r.total_price
            if r.bundle.discounted_price is not None:
                ranked.discounted_price = r.bundle.discounted_price
            if r.shadow_propensity is not None:
                ranked.shadow_propensity = r.shadow_propensity
            ranked.policy_features.extend(r.policy_features)
        return reply

    def RelatedItems(self, request: pb.RelatedItemsRequest, context: grpc.ServicerContext) -> pb.RelatedItemsResponse:
        if not request.catalog_id or not request.item_id:
            raise InvalidArgument("catalog_id and item_id are required")
        if not 1 <= request.k <= MAX_K:
            raise InvalidArgument(f"k must be between 1 and {MAX_K}, got {request.k}")
        reply = pb.RelatedItemsResponse()
        for related in self._recommender.related_items(request.catalog_id, request.item_id, request.k):
            entry = reply.items.add(bought_together=related.bought_together, explanation=related.explanation)
            entry.item.item_id = related.item.item_id
            entry.item.title = related.item.title
            entry.item.image_url = related.item.image_url
            if related.item.price is not None:
                entry.item.price = related.item.price
        return reply

    def SearchBundles(
        self, request: pb.SearchBundlesRequest, context: grpc.ServicerContext
    ) -> pb.SearchBundlesResponse:
        if self._search is None:
            raise SearchNotConfigured(self._search_off_reason)
        query = request.query.strip()
        if not request.catalog_id or not query:
            raise InvalidArgument("catalog_id and a query that is not blank are required")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidArgument(f"query is {len(query)} characters; at most {MAX_QUERY_CHARS}")
        if not 1 <= request.k <= MAX_K:
            raise InvalidArgument(f"k must be between 1 and {MAX_K}, got {request.k}")
        result = self._search.search(request.catalog_id, query, request.k)
        metrics.SEARCHES.labels("found" if result.hits else "empty").inc()
        reply = pb.SearchBundlesResponse(model_version=result.model_version)
        for hit in result.hits:
            found = reply.bundles.add(
                bundle_id=hit.bundle.bundle_id,
                name=hit.bundle.name,
                score=hit.score,
                explanation=hit.explanation,
                propensity=1.0,
                source=hit.bundle.source,
            )
            for item in hit.items:
                entry = found.items.add(item_id=item.item_id, title=item.title, image_url=item.image_url)
                if item.price is not None:
                    entry.price = item.price
            if hit.total_price is not None:
                found.total_price = hit.total_price
            if hit.bundle.discounted_price is not None:
                found.discounted_price = hit.bundle.discounted_price
        return reply
