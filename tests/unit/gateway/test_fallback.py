"""When the ranker is down or slow, bundles come from the popular list, say so, and are counted."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from services.gateway.domain import NO_CONSTRAINTS, BundleConstraints, Recommendation
from services.gateway.fallback import FallbackBundleSource
from services.gateway.metrics import GatewayMetrics
from services.gateway.ranker_client import RankerTimedOut
from shared.errors import InvalidArgument, NotFound, Unavailable
from tests.unit.gateway.gateway_fakes import TWO_BUNDLES, RecordingPublisher, ScriptedBundleSource, make_gateway

POPULAR = dataclasses.replace(TWO_BUNDLES, model_version="popular-fallback", policy_version="", cold_start=False)


@dataclass
class ScriptedPopular:
    answer: Recommendation | None = POPULAR
    calls: list[tuple[str, str, int, BundleConstraints]] = field(default_factory=list)

    async def recommend(
        self, *, catalog_id: str, user_id: str, k: int, constraints: BundleConstraints = NO_CONSTRAINTS
    ) -> Recommendation | None:
        self.calls.append((catalog_id, user_id, k, constraints))
        return self.answer

    async def close(self) -> None:
        pass


def recommend(source: FallbackBundleSource, anchors: Sequence[str] = ()) -> Recommendation:
    return asyncio.run(
        source.recommend(
            catalog_id="amazon",
            user_id="shopper-42",
            k=2,
            anchor_item_ids=anchors,
            request_id="r-1",
            constraints=BundleConstraints(max_total_price=50.0),
        )
    )


def fallback_count(metrics: GatewayMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("bundlewise_gateway_fallbacks_total", {"reason": reason})
    return value or 0.0


def test_the_rankers_answer_is_served_as_it_is_when_the_ranker_answers() -> None:
    metrics, popular = GatewayMetrics(CollectorRegistry()), ScriptedPopular()
    source = FallbackBundleSource(ScriptedBundleSource(recommendation=TWO_BUNDLES), popular, metrics)

    assert recommend(source) == TWO_BUNDLES
    assert popular.calls == []


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (Unavailable("ranker is unavailable"), "ranker unavailable"),
        (RankerTimedOut("ranker did not answer in time"), "ranker timed out"),
    ],
)
def test_an_unavailable_ranker_is_replaced_by_popular_bundles_marked_with_the_reason(
    failure: Unavailable, reason: str
) -> None:
    metrics, popular = GatewayMetrics(CollectorRegistry()), ScriptedPopular()
    ranker = ScriptedBundleSource(recommendation=TWO_BUNDLES, failure=failure)
    source = FallbackBundleSource(ranker, popular, metrics)

    answer = recommend(source)

    assert answer == dataclasses.replace(POPULAR, fallback_reason=reason)
    assert popular.calls == [("amazon", "shopper-42", 2, BundleConstraints(max_total_price=50.0))]
    assert fallback_count(metrics, reason.replace(" ", "_")) == 1


@pytest.mark.parametrize("failure", [NotFound("ranker: unknown catalog"), InvalidArgument("ranker: bad k")])
def test_errors_the_caller_must_fix_are_not_hidden_by_the_fallback(failure: Exception) -> None:
    popular = ScriptedPopular()
    ranker = ScriptedBundleSource(recommendation=TWO_BUNDLES, failure=failure)
    source = FallbackBundleSource(ranker, popular, GatewayMetrics(CollectorRegistry()))

    with pytest.raises(type(failure)):
        recommend(source)
    assert popular.calls == []


def test_without_popular_bundles_either_the_rankers_unavailability_is_raised() -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    ranker = ScriptedBundleSource(recommendation=TWO_BUNDLES, failure=Unavailable("ranker is unavailable"))
    source = FallbackBundleSource(ranker, ScriptedPopular(answer=None), metrics)

    with pytest.raises(Unavailable, match="ranker is unavailable"):
        recommend(source)
    assert fallback_count(metrics, "ranker_unavailable") == 0


def test_the_bundles_route_answers_200_with_the_fallback_reason_instead_of_a_503() -> None:
    ranker = ScriptedBundleSource(recommendation=TWO_BUNDLES, failure=Unavailable("ranker is unavailable"))
    metrics = GatewayMetrics(CollectorRegistry())
    gateway = make_gateway(RecordingPublisher(), FallbackBundleSource(ranker, ScriptedPopular(), metrics))
    key = gateway.keys.add()
    with TestClient(gateway.app, headers={"Authorization": f"Bearer {key}"}) as client:
        response = client.get("/v1/users/shopper-42/bundles", params={"catalog_id": "amazon", "k": 2})

    assert response.status_code == 200
    answer = response.json()
    assert answer["fallback"] == {"reason": "ranker unavailable"}
    assert answer["model_version"] == "popular-fallback"
    assert [b["bundle_id"] for b in answer["bundles"]] == ["b-1", "b-2"]


def test_a_gateway_with_the_fallback_stays_ready_while_the_ranker_is_down() -> None:
    # Every replica shares the ranker: unready with it, all would leave rotation and answer nothing.
    ranker = ScriptedBundleSource(recommendation=TWO_BUNDLES, ready_failure=Unavailable("ranker is NOT_SERVING"))
    source = FallbackBundleSource(ranker, ScriptedPopular(), GatewayMetrics(CollectorRegistry()))
    with TestClient(make_gateway(RecordingPublisher(), source).app) as client:
        response = client.get("/readyz")

    assert (response.status_code, response.json()) == (200, {"status": "ready"})
