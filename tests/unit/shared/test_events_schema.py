"""Specification of the event schema (version 1)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.events import (
    MAX_EVENT_BYTES,
    BundleImpressionEvent,
    InvalidEvent,
    ItemEvent,
    encode_event,
    parse_event,
    partition_key,
)


def raw(**fields: Any) -> bytes:
    event = {
        "type": "add_to_cart",
        "event_id": "evt-0000001",
        "catalog_id": "amazon",
        "user_id": "u1",
        "item_id": "electronic-49",
        "event_time": "2014-07-22T10:00:00+00:00",
    }
    event.update(fields)
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


def reason_of(payload: bytes) -> str:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(payload)
    return caught.value.reason


def test_a_valid_event_parses_to_its_type_and_round_trips() -> None:
    event = parse_event(raw())

    assert isinstance(event, ItemEvent)
    assert event.quantity == 1
    assert parse_event(encode_event(event)) == event
    assert partition_key(event) == b"amazon:u1"


def test_an_impression_logs_each_bundle_with_its_position_and_propensity() -> None:
    event = parse_event(
        raw(
            type="bundle_impression",
            item_id=None,
            impression_id="imp-1",
            bundles=[{"bundle_id": "b1", "position": 0, "propensity": 0.8}],
            policy_version="3",
        )
    )

    assert isinstance(event, BundleImpressionEvent)
    assert event.bundles[0].propensity == 0.8


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"{not json", "Invalid JSON"),
        (raw(type="teleport"), "does not match any of the expected tags"),
        (raw(item_id=None), "item_id: Field required"),
        (raw(quantity="many"), "quantity: Input should be a valid integer"),
        (raw(event_time="2014-07-22T10:00:00"), "event_time: Input should have timezone info"),
        (raw(user_id="has space"), "user_id: String should match pattern"),
        (raw(event_id="short"), "event_id: String should match pattern"),
        (raw(unexpected="x"), "unexpected: Extra inputs are not permitted"),
    ],
)
def test_an_invalid_event_is_refused_with_a_reason_naming_the_problem(payload: bytes, expected: str) -> None:
    assert expected in reason_of(payload)


def test_an_oversized_event_is_refused_before_parsing() -> None:
    assert (
        reason_of(b" " * (MAX_EVENT_BYTES + 1))
        == f"event is {MAX_EVENT_BYTES + 1} bytes; the limit is {MAX_EVENT_BYTES}"
    )
