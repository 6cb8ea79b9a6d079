"""POST /v1/feedback: shown, clicked and bought become bundle events on the log, idempotent by the client's id."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.policy import ope
from services.policy.join import RewardWeights
from shared.errors import Unavailable
from shared.events import BundleImpressionEvent, BundleOutcomeEvent, ShownBundle
from tests.unit.gateway.gateway_fakes import RecordingPublisher

PROBLEM = "application/problem+json"
WHEN = "2026-05-01T12:00:00+00:00"


def feedback(action: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "feedback_id": f"fb-{action}-0001",
        "action": action,
        "catalog_id": "amazon",
        "user_id": "shopper-42",
        "session_id": "s-9",
        "impression_id": "imp-1234",
        "occurred_at": WHEN,
    }
    body.update(fields)
    return body


def test_shown_bundles_become_one_bundle_impression_event_with_positions_and_propensities(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    shown = [
        {"bundle_id": "b-1", "position": 0, "propensity": 0.61},
        {"bundle_id": "b-2", "position": 1, "propensity": 0.2},
    ]

    response = client.post(
        "/v1/feedback", json=feedback("shown", bundles=shown, model_version="m-7", policy_version="p-3")
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "event_id": "fb-shown-0001",
        "event_type": "bundle_impression",
        "impression_id": "imp-1234",
    }
    [[event]] = publisher.batches
    assert isinstance(event, BundleImpressionEvent)
    assert event.model_dump(mode="json", exclude={"context", "schema_version"}) == {
        "type": "bundle_impression",
        "event_id": "fb-shown-0001",
        "catalog_id": "amazon",
        "user_id": "shopper-42",
        "session_id": "s-9",
        "event_time": "2026-05-01T12:00:00Z",
        "impression_id": "imp-1234",
        "bundles": [ShownBundle.model_validate(b).model_dump() for b in shown],
        "model_version": "m-7",
        "policy_version": "p-3",
    }


@pytest.mark.parametrize(("action", "event_type"), [("clicked", "bundle_click"), ("bought", "bundle_purchase")])
def test_a_clicked_or_bought_bundle_becomes_its_outcome_event(
    client: TestClient, publisher: RecordingPublisher, action: str, event_type: str
) -> None:
    extra = {"revenue": 42.5} if action == "bought" else {}

    response = client.post("/v1/feedback", json=feedback(action, bundle_id="b-2", **extra))

    assert response.status_code == 200, response.text
    [[event]] = publisher.batches
    assert isinstance(event, BundleOutcomeEvent)
    assert (event.type, event.event_id, event.bundle_id, event.impression_id, event.revenue) == (
        event_type,
        f"fb-{action}-0001",
        "b-2",
        "imp-1234",
        42.5 if action == "bought" else None,
    )


def test_the_idempotency_key_header_stands_for_a_missing_feedback_id(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    body = feedback("clicked", bundle_id="b-1")
    del body["feedback_id"]

    response = client.post("/v1/feedback", json=body, headers={"Idempotency-Key": "click-from-header-1"})

    assert response.status_code == 200
    assert publisher.batches[0][0].event_id == "click-from-header-1"


def test_feedback_without_a_client_id_is_refused_the_gateway_never_mints_one(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    body = feedback("clicked", bundle_id="b-1")
    del body["feedback_id"]

    response = client.post("/v1/feedback", json=body)

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert "feedback_id" in response.json()["detail"]
    assert publisher.batches == []


def test_a_feedback_id_and_a_different_idempotency_key_are_refused(client: TestClient) -> None:
    response = client.post(
        "/v1/feedback", json=feedback("clicked", bundle_id="b-1"), headers={"Idempotency-Key": "another-id-0001"}
    )

    assert response.status_code == 422
    assert response.json()["detail"] == "feedback_id differs from the Idempotency-Key header; send one of them"


def test_an_idempotency_key_that_cannot_be_an_event_id_is_refused(client: TestClient) -> None:
    body = feedback("clicked", bundle_id="b-1")
    del body["feedback_id"]

    response = client.post("/v1/feedback", json=body, headers={"Idempotency-Key": "short"})

    assert response.status_code == 422
    assert "8 to 128" in response.json()["detail"]


def test_a_clicked_feedback_without_a_bundle_is_a_422_naming_the_field(client: TestClient) -> None:
    response = client.post("/v1/feedback", json=feedback("clicked"))

    assert response.status_code == 422
    assert "bundle_id" in response.json()["detail"]


def test_feedback_is_not_acknowledged_while_the_event_log_is_down(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    publisher.failure = Unavailable("Kafka is not reachable; retry later")

    response = client.post("/v1/feedback", json=feedback("clicked", bundle_id="b-1"))

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


SHADOWED = [  # sent out of position order, as a storefront may
    {"bundle_id": "b-2", "position": 1, "propensity": 0.2, "shadow_propensity": 0.123456},
    {"bundle_id": "b-1", "position": 0, "propensity": 0.61, "shadow_propensity": 0.75},
    {"bundle_id": "b-3", "position": 2, "propensity": 0.3, "shadow_propensity": 0.0},
]


def test_a_shadow_candidates_propensities_are_logged_in_the_impression_context_in_position_order(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    response = client.post("/v1/feedback", json=feedback("shown", bundles=SHADOWED, shadow_policy="ctr-heavy:v3"))

    assert response.status_code == 200, response.text
    [[event]] = publisher.batches
    assert isinstance(event, BundleImpressionEvent)
    assert event.context == {"shadow_policy": "ctr-heavy:v3", "shadow_propensities": "0.75,0.1235,0"}
    assert [b.model_dump(exclude_none=True) for b in event.bundles] == [
        {"bundle_id": b["bundle_id"], "position": b["position"], "propensity": b["propensity"]} for b in SHADOWED
    ]


def test_the_contextual_bandits_features_of_each_shown_bundle_are_logged_with_the_impression(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    shown = [
        {"bundle_id": "b-1", "position": 0, "propensity": 0.96, "policy_features": [1.0, 1.2, 0.1, 1.0, 0.0, 0.0]},
        {"bundle_id": "b-2", "position": 1, "propensity": 0.01, "policy_features": [1.0, -0.4, 0.0, 0.25, 1.1, 1.0]},
    ]

    response = client.post("/v1/feedback", json=feedback("shown", bundles=shown))

    assert response.status_code == 200, response.text
    [[event]] = publisher.batches
    assert isinstance(event, BundleImpressionEvent)
    assert [b.policy_features for b in event.bundles] == [b["policy_features"] for b in shown]


@pytest.mark.parametrize(
    ("features", "reason"),
    [([float("nan")] * 6, "finite"), ([1.0] * 17, "at most 16"), ([1.0, 2e6], "less than or equal")],
)
def test_policy_features_that_no_ranker_sends_are_refused_with_the_reason(
    client: TestClient, publisher: RecordingPublisher, features: list[float], reason: str
) -> None:
    shown = [{"bundle_id": "b-1", "position": 0, "propensity": 0.9, "policy_features": features}]

    body = json.dumps(feedback("shown", bundles=shown))  # NaN as JavaScript writes it
    response = client.post("/v1/feedback", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert reason in response.text
    assert publisher.batches == []


def test_the_off_policy_evaluation_reads_the_logged_shadow_candidate_position_by_position(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    client.post("/v1/feedback", json=feedback("shown", bundles=SHADOWED, shadow_policy="ctr-heavy:v3"))
    [[event]] = publisher.batches
    assert isinstance(event, BundleImpressionEvent)

    joined, _ = ope.join_events([event], timedelta(minutes=30), RewardWeights(1.0, 0.0, 0.0))
    data, kept, without_shadow = ope.logged_slates(joined, ope.Selection(shadow_policy="ctr-heavy:v3"))

    assert (kept, without_shadow) == (1, 0)
    assert data is not None
    assert data.target_propensities.tolist() == [[0.75, 0.1235, 0.0]]
    assert data.logging_propensities.tolist() == [[0.61, 0.2, 0.3]]


def test_an_impression_without_a_shadow_candidate_has_an_empty_context(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    shown = [{"bundle_id": "b-1", "position": 0, "propensity": 0.61}]

    assert client.post("/v1/feedback", json=feedback("shown", bundles=shown)).status_code == 200
    assert publisher.batches[0][0].context == {}


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"bundles": SHADOWED}, "shadow_propensity needs the answer's shadow_policy"),
        ({"bundles": [{**SHADOWED[0], "shadow_propensity": None}], "shadow_policy": "c:v1"}, "every bundle needs"),
        ({"bundles": [{**SHADOWED[0], "shadow_propensity": 1.01}], "shadow_policy": "c:v1"}, "shadow_propensity"),
        ({"bundles": [{**SHADOWED[0], "shadow_propensity": -0.1}], "shadow_policy": "c:v1"}, "shadow_propensity"),
        ({"bundles": SHADOWED, "shadow_policy": "no version"}, "shadow_policy"),
        ({"bundles": SHADOWED, "shadow_policy": "a,b:v1"}, "shadow_policy"),
        ({"bundles": SHADOWED, "shadow_policy": "x" * 65 + ":v1"}, "shadow_policy"),
    ],
)
def test_shadow_fields_that_cannot_be_evaluated_are_a_422_naming_the_problem(
    client: TestClient, publisher: RecordingPublisher, fields: dict[str, Any], problem: str
) -> None:
    response = client.post("/v1/feedback", json=feedback("shown", **fields))

    assert response.status_code == 422
    assert problem in response.json()["detail"]
    assert publisher.batches == []


def test_shadow_propensities_that_overflow_the_event_context_are_refused_with_how_many_fit(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    shown = [
        {"bundle_id": f"b-{n}", "position": n, "propensity": 0.01, "shadow_propensity": 0.012345} for n in range(40)
    ]

    response = client.post("/v1/feedback", json=feedback("shown", bundles=shown, shadow_policy="c:v1"))

    assert response.status_code == 422
    assert "more than the 256 an event's context value holds" in response.json()["detail"]
    assert "about 25 fit" in response.json()["detail"]
    assert publisher.batches == []
