"""``python -m services.policy.ope --topic``: off-policy evaluation over events read back from the real
Kafka by replay, the same report as from a file."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from kafka.admin import KafkaAdminClient

from services.policy import ope
from shared.events import BundleImpressionEvent, BundleOutcomeEvent, encode_event, partition_key
from shared.kafka import ensure_topics, make_producer
from tests.unit.policy.policy_testkit import KAFKA_BOOTSTRAP, click, impression


@pytest.fixture
def topic() -> Iterator[str]:
    name = f"policytest.ope.{uuid.uuid4().hex[:12]}"
    ensure_topics(KAFKA_BOOTSTRAP, {name: 3})
    yield name
    admin = KafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP.split(","), client_id="policytest-admin")
    try:
        admin.delete_topics([name])
    finally:
        admin.close()


def test_the_command_evaluates_a_shadow_candidate_over_a_replayed_topic(
    topic: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    events: list[BundleImpressionEvent | BundleOutcomeEvent] = []
    for n in range(30):
        user = f"u{n}"
        shown = impression("shop", f"imp-{n}", ["b1", "b2"], user=user)  # logged propensities 0.5
        events.append(
            shown.model_copy(update={"context": {ope.SHADOW_POLICY: "cand:v1", ope.SHADOW_PROPENSITIES: "0.75,0.25"}})
        )
        if n % 3 == 0:
            events.append(click("shop", f"imp-{n}", "b1", user=user))
        if n % 5 == 0:
            events.append(click("shop", f"imp-{n}", "b2", user=user))
    producer = make_producer(KAFKA_BOOTSTRAP, "policytest-ope")
    try:
        for event in events:
            producer.send(topic, value=encode_event(event), key=partition_key(event))
        producer.flush(timeout=30)
    finally:
        producer.close()
    monkeypatch.setenv("BUNDLEWISE_KAFKA_BOOTSTRAP", KAFKA_BOOTSTRAP)

    assert ope.main(["--topic", topic, "--shadow-policy", "cand:v1"]) == 0
    report = json.loads(capsys.readouterr().out)

    # 10 clicks on b1 (weight 0.75/0.5) and 6 on b2 (weight 0.25/0.5) over 30 impressions.
    assert report["impressions_evaluated"] == 30
    assert report["logging"]["value"] == pytest.approx(16 / 30)
    assert report["estimates"]["ips"]["value"] == pytest.approx((10 * 1.5 + 6 * 0.5) / 30)
    assert report["join"]["outcomes_credited"] == 16
