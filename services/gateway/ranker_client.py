"""The ranker as a :class:`services.gateway.ports.BundleSource`, over an asyncio gRPC channel."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc
import grpc.aio
from bundlewise.ranker.v1 import ranker_pb2, ranker_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.gateway.domain import (
    NO_CONSTRAINTS,
    BundleConstraints,
    BundleItem,
    BundleSearchResult,
    RankedBundle,
    Recommendation,
    RelatedItem,
)
from services.gateway.errors import SearchNotConfigured, SearchNotReady
from shared.errors import (
    Unavailable,
    from_rpc_error,
)
from shared.grpc_client import open_aio_channel

log = logging.getLogger(__name__)

RANKER_SERVICE = ranker_pb2.DESCRIPTOR.services_by_name["Ranker"].full_name


class RankerTimedOut(Unavailable):
    """The ranker did not answer within its deadline (503, or a fallback answer)."""


class RankerBundleSource:
    """Calls ``bundlewise.ranker.v1.Ranker`` at ``address`` with a deadline on every call.

    The channel is opened on first use, on the running event loop (a ``grpc.aio`` channel belongs to
    the loop it was made on), and connects lazily, so a ranker that is down at start-up only makes
    calls fail with :class:`shared.errors.Unavailable`.
    """

    def __init__(self, *, address: str, timeout_s: float, health_timeout_s: float = 0.5) -> None:
        self._address = address
        self._timeout_s = timeout_s
        self._health_timeout_s = health_timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub: ranker_pb2_grpc.RankerStub | None = None

    async def recommend(
        self,
        *,
        catalog_id: str,
        user_id: str,
        k: int,
        anchor_item_ids: Sequence[str],
        request_id: str,
        constraints: BundleConstraints = NO_CONSTRAINTS,
    ) -> Recommendation:
        """``Ranker.RecommendBundles`` within ``timeout_s``; see the port for the contract.

        Raises:
            NotFound: unknown catalog. InvalidArgument: the ranker refused the arguments.
            Unavailable: the ranker is down or missed the deadline.
        """
        stub = self._ranker()
        request = ranker_pb2.RecommendBundlesRequest(
            catalog_id=catalog_id,
            user_id=user_id,
            k=k,
            anchor_item_ids=list(anchor_item_ids),
            request_id=request_id,
            constraints=ranker_pb2.Constraints(
                max_total_price=constraints.max_total_price,
                min_items=constraints.min_items,
                max_items=constraints.max_items,
            ),
        )
        try:
            response = await stub.RecommendBundles(request, timeout=self._timeout_s)
        except grpc.RpcError as err:
            if _code_name(err) == grpc.StatusCode.DEADLINE_EXCEEDED.name:
                raise RankerTimedOut("ranker did not answer in time") from err
            raise from_rpc_error(err, "ranker") from err
        return recommendation_from_proto(response)

    async def related_items(self, *, catalog_id: str, item_id: str, k: int) -> list[RelatedItem]:
        """``Ranker.RelatedItems`` within ``timeout_s``; see the port for the contract."""
        stub = self._ranker()
        request = ranker_pb2.RelatedItemsRequest(catalog_id=catalog_id, item_id=item_id, k=k)
        try:
            response = await stub.RelatedItems(request, timeout=self._timeout_s)
        except grpc.RpcError as err:
            if _code_name(err) == grpc.StatusCode.DEADLINE_EXCEEDED.name:
                raise RankerTimedOut("ranker did not answer in time") from err
            raise from_rpc_error(err, "ranker") from err
        return [
            RelatedItem(
                item=BundleItem(
                    item_id=related.item.item_id,
                    title=related.item.title,
                    price=related.item.price if related.item.HasField("price") else None,
                    image_url=related.item.image_url or None,
                ),
                bought_together=related.bought_together,
                explanation=related.explanation,
            )
            for related in response.items
        ]

    async def search_bundles(self, *, catalog_id: str, query: str, k: int) -> BundleSearchResult:
        """``Ranker.SearchBundles`` within ``timeout_s``; see the port for the contract.

        Raises:
            SearchNotReady: FAILED_PRECONDITION (no bundle vectors for the encoder running now).
            SearchNotConfigured: UNIMPLEMENTED (the ranker cannot search).
            NotFound, InvalidArgument, Unavailable: as for :meth:`recommend`.
        """
        stub = self._ranker()
        request = ranker_pb2.SearchBundlesRequest(catalog_id=catalog_id, query=query, k=k)
        try:
            response = await stub.SearchBundles(request, timeout=self._timeout_s)
        except grpc.RpcError as err:
            code = _code_name(err)
            if code == grpc.StatusCode.DEADLINE_EXCEEDED.name:
                raise RankerTimedOut("ranker did not answer in time") from err
            if code == grpc.StatusCode.FAILED_PRECONDITION.name:
                raise SearchNotReady(f"ranker: {_details(err)}") from err
            if code == grpc.StatusCode.UNIMPLEMENTED.name:
                raise SearchNotConfigured(f"ranker: {_details(err)}") from err
            raise from_rpc_error(err, "ranker") from err
        return BundleSearchResult(
            bundles=tuple(ranked_bundle_from_proto(bundle) for bundle in response.bundles),
            model_version=response.model_version,
        )

    async def check_ready(self) -> None:
        """Asks the ranker's ``grpc.health.v1`` service whether the Ranker is SERVING.

        Raises:
            Unavailable: no SERVING answer within ``health_timeout_s``.
        """
        stub = health_pb2_grpc.HealthStub(self._open_channel())
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=RANKER_SERVICE), timeout=self._health_timeout_s
            )
        except grpc.RpcError as err:
            raise Unavailable(f"ranker health check failed: {_code_name(err)}") from err
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            raise Unavailable(f"ranker is {status}")

    async def close(self) -> None:
        """Closes the channel, cancelling calls still in flight."""
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    def _open_channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = open_aio_channel(self._address)
        return self._channel

    def _ranker(self) -> ranker_pb2_grpc.RankerStub:
        """The stub of the open channel, made once (a stub per call builds its method objects anew)."""
        channel = self._open_channel()
        if self._stub is None:
            self._stub = ranker_pb2_grpc.RankerStub(channel)
        return self._stub


def recommendation_from_proto(response: ranker_pb2.RecommendBundlesResponse) -> Recommendation:
    """The domain view of a ranker answer: unset optional prices, empty image URLs and an empty shadow
    policy become None."""
    return Recommendation(
        bundles=tuple(ranked_bundle_from_proto(bundle) for bundle in response.bundles),
        model_version=response.model_version,
        policy_version=response.policy_version,
        cold_start=response.cold_start,
        shadow_policy=response.shadow_policy or None,
    )


def ranked_bundle_from_proto(bundle: ranker_pb2.RankedBundle) -> RankedBundle:
    """One ranked bundle of a ranker answer; unset optional prices and empty image URLs become None."""
    return RankedBundle(
        bundle_id=bundle.bundle_id,
        name=bundle.name,
        items=tuple(
            BundleItem(
                item_id=item.item_id,
                title=item.title,
                price=item.price if item.HasField("price") else None,
                image_url=item.image_url or None,
            )
            for item in bundle.items
        ),
        score=bundle.score,
        total_price=bundle.total_price if bundle.HasField("total_price") else None,
        discounted_price=bundle.discounted_price if bundle.HasField("discounted_price") else None,
        explanation=bundle.explanation,
        source=bundle.source,
        propensity=bundle.propensity,
        shadow_propensity=bundle.shadow_propensity if bundle.HasField("shadow_propensity") else None,
        policy_features=tuple(bundle.policy_features),
    )


def _details(err: grpc.RpcError) -> str:
    return (err.details() if isinstance(err, grpc.aio.AioRpcError | grpc.Call) else None) or type(err).__name__


def _code_name(err: grpc.RpcError) -> str:
    code = err.code() if isinstance(err, grpc.aio.AioRpcError | grpc.Call) else None
    return code.name if code is not None else type(err).__name__
