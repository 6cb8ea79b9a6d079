"""RankerBundleSource against a real grpc.aio server on an ephemeral loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from bundlewise.ranker.v1 import ranker_pb2, ranker_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.gateway.domain import BundleItem, BundleSearchResult, RankedBundle, Recommendation
from services.gateway.errors import SearchNotConfigured, SearchNotReady
from services.gateway.ranker_client import (
    RANKER_SERVICE,
    RankerBundleSource,
    RankerTimedOut,
    recommendation_from_proto,
)
from shared.errors import InvalidArgument, NotFound, Unavailable

REPLY = ranker_pb2.RecommendBundlesResponse(
    bundles=[
        ranker_pb2.RankedBundle(
            bundle_id="b-1",
            name="Camping starter",
            items=[
                ranker_pb2.BundleItem(item_id="tent-2p", title="Tent", price=129.5, image_url="https://img/t.jpg"),
                ranker_pb2.BundleItem(item_id="stove", title="Stove"),
            ],
            score=0.93,
            total_price=129.5,
            discounted_price=0.0,
            explanation="often bought with Tent",
            propensity=0.61,
            source="catalog",
        ),
        ranker_pb2.RankedBundle(bundle_id="b-2", name="Plain", score=0.1, propensity=0.2, source="generated"),
    ],
    model_version="m-7",
    policy_version="p-3",
    cold_start=True,
)


class ScriptedRanker(ranker_pb2_grpc.RankerServicer):
    """Keeps each request; answers REPLY after ``delay_s``, or aborts with ``abort``."""

    def __init__(self, delay_s: float = 0.0, abort: tuple[grpc.StatusCode, str] | None = None) -> None:
        self.requests: list[ranker_pb2.RecommendBundlesRequest | ranker_pb2.SearchBundlesRequest] = []
        self.delay_s = delay_s
        self.abort = abort

    async def RecommendBundles(
        self, request: ranker_pb2.RecommendBundlesRequest, context: Any
    ) -> ranker_pb2.RecommendBundlesResponse:
        self.requests.append(request)
        await asyncio.sleep(self.delay_s)
        if self.abort is not None:
            await context.abort(*self.abort)
        return REPLY

    async def RelatedItems(
        self, request: ranker_pb2.RelatedItemsRequest, context: Any
    ) -> ranker_pb2.RelatedItemsResponse:
        return ranker_pb2.RelatedItemsResponse()

    async def SearchBundles(
        self, request: ranker_pb2.SearchBundlesRequest, context: Any
    ) -> ranker_pb2.SearchBundlesResponse:
        self.requests.append(request)
        if self.abort is not None:
            await context.abort(*self.abort)
        return ranker_pb2.SearchBundlesResponse(bundles=REPLY.bundles[:1], model_version="e5@1")


def run_against(
    ranker: ScriptedRanker,
    scenario: Callable[[RankerBundleSource], Awaitable[Any]],
    serving: health_pb2.HealthCheckResponse.ServingStatus.ValueType = health_pb2.HealthCheckResponse.SERVING,
    timeout_s: float = 2.0,
) -> Any:
    """Serves ``ranker`` (and a health service) on a free port and runs ``scenario`` on a client of it."""

    async def main() -> Any:
        server = grpc.aio.server()
        ranker_pb2_grpc.add_RankerServicer_to_server(ranker, server)
        health_servicer = health.aio.HealthServicer()
        await health_servicer.set(RANKER_SERVICE, serving)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        source = RankerBundleSource(address=f"127.0.0.1:{port}", timeout_s=timeout_s)
        try:
            return await scenario(source)
        finally:
            await source.close()
            await server.stop(grace=None)

    return asyncio.run(main())


def recommend(source: RankerBundleSource) -> Awaitable[Recommendation]:
    return source.recommend(
        catalog_id="amazon", user_id="shopper-42", k=3, anchor_item_ids=["tent-2p"], request_id="req-1"
    )


def test_the_request_carries_every_argument_and_the_answer_maps_every_field() -> None:
    ranker = ScriptedRanker()

    recommendation = run_against(ranker, recommend)

    assert ranker.requests == [
        ranker_pb2.RecommendBundlesRequest(
            catalog_id="amazon",
            user_id="shopper-42",
            k=3,
            anchor_item_ids=["tent-2p"],
            request_id="req-1",
            constraints=ranker_pb2.Constraints(),
        )
    ]
    assert recommendation == Recommendation(
        bundles=(
            RankedBundle(
                bundle_id="b-1",
                name="Camping starter",
                items=(
                    BundleItem(item_id="tent-2p", title="Tent", price=129.5, image_url="https://img/t.jpg"),
                    BundleItem(item_id="stove", title="Stove", price=None, image_url=None),
                ),
                score=0.93,
                total_price=129.5,
                discounted_price=0.0,
                explanation="often bought with Tent",
                source="catalog",
                propensity=0.61,
            ),
            RankedBundle(
                bundle_id="b-2",
                name="Plain",
                items=(),
                score=0.1,
                total_price=None,
                discounted_price=None,
                explanation="",
                source="generated",
                propensity=0.2,
            ),
        ),
        model_version="m-7",
        policy_version="p-3",
        cold_start=True,
    )


def test_a_shadow_candidates_name_and_propensities_are_mapped_and_their_absence_is_none() -> None:
    shadowed = ranker_pb2.RecommendBundlesResponse()
    shadowed.CopyFrom(REPLY)
    shadowed.shadow_policy = "ctr-heavy:v3"
    shadowed.bundles[0].shadow_propensity = 0.0  # the candidate would never have shown it there
    shadowed.bundles[1].shadow_propensity = 0.45

    with_shadow = recommendation_from_proto(shadowed)
    without = recommendation_from_proto(REPLY)

    assert with_shadow.shadow_policy == "ctr-heavy:v3"
    assert [b.shadow_propensity for b in with_shadow.bundles] == [0.0, 0.45]
    assert without.shadow_policy is None
    assert [b.shadow_propensity for b in without.bundles] == [None, None]


def test_not_found_from_the_ranker_is_a_not_found_error_with_its_reason() -> None:
    ranker = ScriptedRanker(abort=(grpc.StatusCode.NOT_FOUND, "unknown catalog nope"))

    with pytest.raises(NotFound) as raised:
        run_against(ranker, recommend)

    assert str(raised.value) == "ranker: unknown catalog nope"


def test_invalid_argument_from_the_ranker_is_an_invalid_argument_error() -> None:
    ranker = ScriptedRanker(abort=(grpc.StatusCode.INVALID_ARGUMENT, "k must be 1..100"))

    with pytest.raises(InvalidArgument) as raised:
        run_against(ranker, recommend)

    assert str(raised.value) == "ranker: k must be 1..100"


def test_a_ranker_slower_than_the_deadline_is_unavailable_as_timed_out() -> None:
    ranker = ScriptedRanker(delay_s=1.0)

    with pytest.raises(RankerTimedOut) as raised:
        run_against(ranker, recommend, timeout_s=0.1)

    assert str(raised.value) == "ranker did not answer in time"


def test_a_ranker_that_is_not_listening_is_unavailable() -> None:
    async def scenario() -> Recommendation:
        source = RankerBundleSource(address="127.0.0.1:1", timeout_s=1.0)
        try:
            return await recommend(source)
        finally:
            await source.close()

    with pytest.raises(Unavailable) as raised:
        asyncio.run(scenario())

    assert str(raised.value) == "ranker is unavailable"


def test_check_ready_passes_when_the_ranker_is_serving() -> None:
    assert run_against(ScriptedRanker(), lambda source: source.check_ready()) is None


def test_check_ready_raises_unavailable_when_the_ranker_is_not_serving() -> None:
    with pytest.raises(Unavailable) as raised:
        run_against(
            ScriptedRanker(),
            lambda source: source.check_ready(),
            serving=health_pb2.HealthCheckResponse.NOT_SERVING,
        )

    assert str(raised.value) == "ranker is NOT_SERVING"


def search(source: RankerBundleSource) -> Awaitable[BundleSearchResult]:
    return source.search_bundles(catalog_id="amazon", query="相机套装", k=4)


def test_a_search_carries_its_arguments_and_maps_the_found_bundles() -> None:
    ranker = ScriptedRanker()

    result = run_against(ranker, search)

    assert ranker.requests == [ranker_pb2.SearchBundlesRequest(catalog_id="amazon", query="相机套装", k=4)]
    assert result.model_version == "e5@1"
    assert [(b.bundle_id, b.score, b.total_price) for b in result.bundles] == [("b-1", 0.93, 129.5)]
    assert result.bundles[0].items[1] == BundleItem(item_id="stove", title="Stove", price=None, image_url=None)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.FAILED_PRECONDITION, SearchNotReady),
        (grpc.StatusCode.UNIMPLEMENTED, SearchNotConfigured),
        (grpc.StatusCode.NOT_FOUND, NotFound),
    ],
)
def test_a_refused_search_keeps_the_rankers_reason(code: grpc.StatusCode, error: type[Exception]) -> None:
    ranker = ScriptedRanker(abort=(code, "catalog 'amazon' has no bundle vectors yet"))

    with pytest.raises(error) as raised:
        run_against(ranker, search)

    assert str(raised.value) == "ranker: catalog 'amazon' has no bundle vectors yet"
