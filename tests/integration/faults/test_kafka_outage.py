"""The Kafka broker stopped in the middle of a stream posted to the gateway, and started again."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.integration.faults.fault_pipeline import START, USERS, expected_counters, fault_pipeline
from tests.integration.faults.private_stack import PrivateServers
from tests.integration.isolated_pipeline import shopper_events
from tests.integration.waiting import wait_for


def chunks(events: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [events[start : start + size] for start in range(0, len(events), size)]


def test_while_kafka_is_down_the_api_acknowledges_nothing_and_afterwards_every_acknowledged_event_lands_once(
    private_servers: PrivateServers, tmp_path: Path
) -> None:
    before = shopper_events("kb", USERS, 4, START, seed=11)
    refused = shopper_events("kd", USERS, 4, START + timedelta(hours=1), seed=12)
    after = shopper_events("ka", USERS, 4, START + timedelta(hours=2), seed=13)
    with fault_pipeline(private_servers, "kafkadown", tmp_path, ("ingestion", "gateway")) as pipeline:
        url = f"{pipeline.stack.gateway_url}/v1/events"

        def post(events: list[dict[str, Any]]) -> httpx.Response:
            return httpx.post(url, json={"events": events}, headers=pipeline.stack.auth_headers(), timeout=30)

        acknowledged = []
        for chunk in chunks(before, 10):
            assert post(chunk).status_code == 200
            acknowledged += chunk

        private_servers.stop_kafka()
        for chunk in chunks(refused, 10):
            reply = post(chunk)
            assert reply.status_code == 503, reply.text
            assert int(reply.headers["Retry-After"]) > 0
            assert "accepted" not in reply.json()

        private_servers.up()  # starts the broker again; the others are up
        # The storefront sends the refused events again, with the same ids, until they are accepted.
        for chunk in chunks(refused, 10):
            wait_for(lambda: post(chunk).status_code, lambda status: status == 200, 90, "an acknowledgement")  # noqa: B023
            acknowledged += chunk
        for chunk in chunks(after, 10):
            assert post(chunk).status_code == 200
            acknowledged += chunk

        pipeline.wait_until_all_applied(timeout_s=90)
        pipeline.stack.stop()

        assert pipeline.stored_ids() == Counter(e["event_id"] for e in acknowledged)
        assert pipeline.counters() == expected_counters(acknowledged)
        live = pipeline.features()
        assert pipeline.rebuilt_features() == live
