"""Policy rollout on the real PostgreSQL and Kafka: guard-railed refreshes, promotion with evidence, a
rollback the running updater adopts, and a restart that keeps what was learned."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from services.policy.domain import Snapshot
from services.policy.rollout import OpeEvidence, PromotionRefused, PromotionRule, promote, rollback
from services.policy.settings import PolicySettings
from services.policy.wiring import PolicyService, build_policy_service
from shared.events import Event, encode_event, partition_key
from shared.kafka import ensure_topics, make_producer
from tests.unit.policy.policy_testkit import (
    KAFKA_BOOTSTRAP,
    POSTGRES_URL,
    click,
    counts,
    create_namespace,
    drop_namespace,
    impression,
    wait_for,
)

CATALOG = "shop"


@pytest.fixture
def settings() -> Iterator[PolicySettings]:
    namespace = create_namespace()
    topic = f"policytest.rollout.{uuid.uuid4().hex[:12]}"
    ensure_topics(KAFKA_BOOTSTRAP, {topic: 2})
    yield PolicySettings(
        postgres_url=POSTGRES_URL,
        namespace=namespace,
        kafka_bootstrap=KAFKA_BOOTSTRAP,
        events_topic=topic,
        metrics_port=0,
        policy_publish_every_s=0.2,
        policy_max_rate_change=0.05,
    )
    drop_namespace(namespace)
    admin = KafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP.split(","), client_id="policytest-admin")
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()


@pytest.fixture
def produce(settings: PolicySettings) -> Iterator[Callable[[list[Event]], None]]:
    producer: KafkaProducer = make_producer(KAFKA_BOOTSTRAP, "policytest-rollout")

    def send(events: list[Event]) -> None:
        for event in events:
            producer.send(settings.events_topic, value=encode_event(event), key=partition_key(event))
        producer.flush(timeout=30)

    yield send
    producer.close()


@pytest.fixture
def start(settings: PolicySettings) -> Iterator[Callable[[], PolicyService]]:
    started: list[PolicyService] = []

    def start_one() -> PolicyService:
        service = build_policy_service(settings)
        started.append(service)
        service.updater.start()
        return service

    yield start_one
    for service in started:
        service.close()


def shown_and_clicked(prefix: str, shown: int, clicked: int) -> list[Event]:
    events: list[Event] = [impression(CATALOG, f"{prefix}{n}", ["b1"]) for n in range(shown)]
    return events + [click(CATALOG, f"{prefix}{n}", "b1") for n in range(clicked)]


def latest_when(service: PolicyService, done: Callable[[Snapshot], bool]) -> Snapshot:
    found = wait_for(lambda: service.store.latest(CATALOG), lambda s: s is not None and done(s))
    assert found is not None
    return found


def b1_rate(snapshot: Snapshot) -> float:
    return snapshot.params.arms[0].expected_click_rate


def test_refreshes_are_bounded_rollback_is_adopted_and_a_restart_keeps_the_learning(
    start: Callable[[], PolicyService], produce: Callable[[list[Event]], None]
) -> None:
    service = start()
    produce(shown_and_clicked("a", shown=20, clicked=2))
    first = latest_when(service, lambda s: counts(s.params) == {"b1": (20, 2)})

    # Every shown bundle clicked: the learned rate jumps, each published refresh moves 0.05 at most.
    produce(shown_and_clicked("b", shown=30, clicked=30))
    refreshed = latest_when(service, lambda s: counts(s.params) == {"b1": (50, 32)})
    learned_rate = (1 + 32) / (1 + 20 + 50)
    assert b1_rate(refreshed) < learned_rate
    history = sorted(service.store.history(CATALOG, 100), key=lambda s: s.version)
    steps = [b1_rate(b) - b1_rate(a) for a, b in itertools.pairwise(history)]
    assert max(steps) <= 0.05 + 1e-9

    # An operator rolls back to the first version; the updater adopts it, then keeps learning from there.
    rolled_back = rollback(service.store, CATALOG, to_version=first.version)
    produce(shown_and_clicked("c", shown=1, clicked=0))  # dropped: learned before the rollback was adopted
    assert wait_for(lambda: service.updater.approved_version(CATALOG), lambda v: v == rolled_back) == rolled_back
    produce(shown_and_clicked("d", shown=2, clicked=0))
    # From the first version's counts (20, 2): the two new impressions, never the dropped or the undone ones.
    after = latest_when(service, lambda s: s.version > rolled_back and counts(s.params)["b1"][0] >= 22)
    assert counts(after.params) == {"b1": (22, 2)}

    # A restart resumes from the latest version: nothing learned is lost, nothing counted twice.
    service.close()
    restarted = start()
    before_restart = counts(after.params)["b1"]
    produce(shown_and_clicked("e", shown=1, clicked=1))
    resumed = latest_when(restarted, lambda s: counts(s.params)["b1"][1] > before_restart[1])
    assert counts(resumed.params) == {"b1": (before_restart[0] + 1, before_restart[1] + 1)}


def test_a_promotion_needs_passing_evidence_and_its_settings_survive_refreshes(
    start: Callable[[], PolicyService], produce: Callable[[list[Event]], None]
) -> None:
    service = start()
    produce(shown_and_clicked("a", shown=5, clicked=1))
    current = latest_when(service, lambda s: counts(s.params) == {"b1": (5, 1)})
    candidate = replace(current.params, temperature=0.4, ctr_weight=3.0)
    rule = PromotionRule(min_impressions=1000, max_regression=0.0)

    with pytest.raises(PromotionRefused):
        promote(service.store, CATALOG, candidate, OpeEvidence("dr", 5000, 0.1, 0.01, -0.002, 0.02), rule)
    assert service.store.latest(CATALOG) == current

    promoted = promote(service.store, CATALOG, candidate, OpeEvidence("dr", 5000, 0.1, 0.01, 0.001, 0.02), rule)
    produce(shown_and_clicked("b", shown=1, clicked=0))  # dropped: learned before the promotion was adopted
    assert wait_for(lambda: service.updater.approved_version(CATALOG), lambda v: v == promoted) == promoted
    produce(shown_and_clicked("c", shown=1, clicked=0))
    refreshed = latest_when(service, lambda s: s.version > promoted)
    settings: dict[str, Any] = {"temperature": 0.4, "ctr_weight": 3.0}
    assert {k: getattr(refreshed.params, k) for k in settings} == settings
