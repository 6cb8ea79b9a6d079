"""POST /v1/events: per-event validation, publishing, and the status of each outcome."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from shared.errors import Unavailable
from tests.unit.gateway.gateway_fakes import RecordingPublisher, view_event

PROBLEM = "application/problem+json"


def test_a_valid_batch_is_accepted_and_published_in_order(client: TestClient, publisher: RecordingPublisher) -> None:
    events = [view_event(3), view_event(1), view_event(2, type="purchase", price=9.99)]

    response = client.post("/v1/events", json={"events": events})

    assert response.status_code == 200
    assert response.json() == {
        "accepted": 3,
        "rejected": 0,
        "results": [
            {"index": 0, "event_id": "evt-00000003", "status": "accepted", "reason": None},
            {"index": 1, "event_id": "evt-00000001", "status": "accepted", "reason": None},
            {"index": 2, "event_id": "evt-00000002", "status": "accepted", "reason": None},
        ],
    }
    assert len(publisher.batches) == 1
    assert [event.event_id for event in publisher.batches[0]] == ["evt-00000003", "evt-00000001", "evt-00000002"]
    assert publisher.batches[0][2].type == "purchase"


def test_one_bad_event_gets_207_with_its_reason_and_the_others_are_published(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    bad = view_event(2)
    del bad["item_id"]

    response = client.post("/v1/events", json={"events": [view_event(1), bad, view_event(3)]})

    assert response.status_code == 207
    assert response.json() == {
        "accepted": 2,
        "rejected": 1,
        "results": [
            {"index": 0, "event_id": "evt-00000001", "status": "accepted", "reason": None},
            {"index": 1, "event_id": "evt-00000002", "status": "rejected", "reason": "view.item_id: Field required"},
            {"index": 2, "event_id": "evt-00000003", "status": "accepted", "reason": None},
        ],
    }
    assert [[event.event_id for event in batch] for batch in publisher.batches] == [["evt-00000001", "evt-00000003"]]


def test_a_batch_with_no_valid_event_is_a_422_problem_with_every_reason(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    naive_time = view_event(1, event_time="2024-05-01T12:00:00")

    response = client.post("/v1/events", json={"events": [naive_time, "not an event"]})

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == {
        "type": "about:blank",
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "none of the 2 events is valid; `results` gives the reason for each",
        "accepted": 0,
        "rejected": 2,
        "results": [
            {
                "index": 0,
                "event_id": "evt-00000001",
                "status": "rejected",
                "reason": "view.event_time: Input should have timezone info",
            },
            {
                "index": 1,
                "event_id": None,
                "status": "rejected",
                "reason": "event: Input should be a valid dictionary or object to extract fields from",
            },
        ],
    }
    assert publisher.batches == []


def test_malformed_json_is_a_400_problem_saying_it_is_not_json(client: TestClient) -> None:
    response = client.post("/v1/events", content=b'{"events": [', headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"].startswith("the body is not JSON (")


def test_a_body_over_the_limit_is_a_413_problem(client: TestClient, publisher: RecordingPublisher) -> None:
    body = json.dumps({"events": [view_event(1, context={"note": "x" * 200}) for _ in range(100)]})
    assert len(body) > 20_000

    response = client.post("/v1/events", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"] == "the body is larger than 20000 bytes; send less per request (split batches)"
    assert publisher.batches == []


def test_a_streamed_body_over_the_limit_is_a_413_problem_without_content_length(client: TestClient) -> None:
    chunks = [b'{"events": [' + b" " * 15_000, b" " * 15_000 + b"]}"]

    response = client.post("/v1/events", content=iter(chunks), headers={"content-type": "application/json"})

    assert response.status_code == 413


def test_more_events_than_the_limit_is_a_422_problem(client: TestClient, publisher: RecordingPublisher) -> None:
    response = client.post("/v1/events", json={"events": [view_event(n) for n in range(6)]})

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"] == "6 events in one request; the limit is 5: split the batch"
    assert publisher.batches == []


def test_a_body_that_is_not_an_events_object_is_a_422_problem(client: TestClient) -> None:
    for body in ([view_event(1)], {"event": [view_event(1)]}, {"events": view_event(1)}):
        response = client.post("/v1/events", json=body)

        assert response.status_code == 422
        assert response.json()["detail"] == (
            'the body must be a JSON object {"events": [...]} holding a list of events'
        )


def test_an_empty_batch_is_a_422_problem(client: TestClient) -> None:
    response = client.post("/v1/events", json={"events": []})

    assert response.status_code == 422
    assert response.json()["detail"] == "events is empty; send at least one event"


def test_publisher_unavailable_is_a_503_with_retry_after_and_nothing_accepted(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    publisher.failure = Unavailable("Kafka did not acknowledge the events within 5 s; retry later")

    response = client.post("/v1/events", json={"events": [view_event(1), view_event(2)]})

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "Kafka did not acknowledge the events within 5 s; retry later",
    }


def test_the_idempotency_key_becomes_the_event_id_of_a_single_event_without_one(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    event = view_event(1)
    del event["event_id"]

    response = client.post("/v1/events", json={"events": [event]}, headers={"Idempotency-Key": "order-7781-view"})

    assert response.status_code == 200
    assert response.json()["results"][0]["event_id"] == "order-7781-view"
    assert publisher.batches[0][0].event_id == "order-7781-view"


def test_an_idempotency_key_with_several_events_is_a_422_problem(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    response = client.post(
        "/v1/events", json={"events": [view_event(1), view_event(2)]}, headers={"Idempotency-Key": "order-7781"}
    )

    assert response.status_code == 422
    assert response.json()["detail"] == (
        "Idempotency-Key is accepted only with a single event; give each event its own event_id"
    )
    assert publisher.batches == []


def test_an_event_without_an_id_is_rejected_never_given_one_by_the_gateway(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    anonymous = view_event(2)
    del anonymous["event_id"]

    response = client.post("/v1/events", json={"events": [view_event(1), anonymous]})

    assert response.status_code == 207
    assert response.json()["results"][1] == {
        "index": 1,
        "event_id": None,
        "status": "rejected",
        "reason": "view.event_id: Field required",
    }
    assert [event.event_id for event in publisher.batches[0]] == ["evt-00000001"]
