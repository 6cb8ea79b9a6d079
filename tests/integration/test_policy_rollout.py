"""Policy rollout on the real PostgreSQL and Kafka: guard-railed refreshes, promotion with evidence, a
rollback the running updater adopts, and a restart that keeps what was learned."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from services.policy.bandit import CatalogBandits
from services.policy.domain import Snapshot
from services.policy.join import JoinedImpression, ShownPosition
from services.policy.rollout import OpeEvidence, PromotionRefused, PromotionRule, promote, rollback
from services.policy.settings import PolicySettings
from services.policy.wiring import PolicyService, build_policy_service
from shared.events import Event, encode_event, partition_key
from shared.kafka import ensure_topics, make_producer
from tests.unit.policy.policy_testkit import (
    EVENT_TIME,
    KAFKA_BOOTSTRAP,
    POSTGRES_URL,
    Showing,
    click,
    counts,
    create_namespace,
    drop_namespace,
    impression,
    shopper_showings,
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


BANDIT_SETTINGS = {
    "policy_kind": "contextual_bandit",
    "policy_join_window_s": 60.0,
    "policy_join_lateness_s": 0.0,
    "policy_bandit_max_step": 1.0,  # serve what was learned, to compare it
}


def shown_with_features(prefix: str, showings: list[Showing], seconds: float) -> list[Event]:
    """The showings as impressions with their features, and their clicks, stamped ``seconds`` after
    EVENT_TIME; then an outcome an hour later that closes them (the join's window is 60 s)."""
    events: list[Event] = []
    for n, showing in enumerate(showings):
        logged = impression(CATALOG, f"{prefix}{n}", showing.bundles, features=showing.features)
        events.append(logged.model_copy(update={"event_time": EVENT_TIME + timedelta(seconds=seconds)}))
        events += [
            click(CATALOG, f"{prefix}{n}", bundle).model_copy(
                update={"event_time": EVENT_TIME + timedelta(seconds=seconds + 10)}
            )
            for bundle in showing.clicked
        ]
    closer = click(CATALOG, f"{prefix}-closer", "b0")
    return [*events, closer.model_copy(update={"event_time": EVENT_TIME + timedelta(seconds=seconds + 3600)})]


def closed_impressions(showings: list[Showing]) -> list[JoinedImpression]:
    """What the join gives the bandit for ``showings`` (the propensities logged are 0.5)."""
    return [
        JoinedImpression(
            CATALOG,
            f"x{n}",
            "u1",
            EVENT_TIME,
            "",
            {},
            tuple(ShownPosition(b, k, 0.5, f) for k, (b, f) in enumerate(zip(s.bundles, s.features, strict=True))),
            tuple(1.0 if b in s.clicked else 0.0 for b in s.bundles),
            (0,) * len(s.bundles),
            (0,) * len(s.bundles),
        )
        for n, s in enumerate(showings)
    ]


def test_a_rolled_back_contextual_bandit_is_served_as_it_was_and_learned_on_from_there(
    settings: PolicySettings, produce: Callable[[list[Event]], None]
) -> None:
    bandit_settings = settings.model_copy(update=BANDIT_SETTINGS)
    service = build_policy_service(bandit_settings)
    service.updater.start()
    try:
        showings = shopper_showings(90, seed=11)
        produce(shown_with_features("a", showings[:40], seconds=0))
        first = latest_when(service, lambda s: s.params.bandit is not None and bool(s.params.bandit.biases))
        produce(shown_with_features("b", showings[40:80], seconds=7200))
        second = latest_when(service, lambda s: s.version > first.version and s.params.bandit != first.params.bandit)
        assert first.params.bandit is not None
        assert second.params.bandit is not None

        rolled_back = rollback(service.store, CATALOG, to_version=first.version)
        republished = service.store.get(CATALOG, rolled_back)
        assert republished is not None
        assert republished.params.bandit is not None
        assert republished.params.bandit == replace(
            first.params.bandit, closed_through=second.params.bandit.closed_through
        )
        produce([impression(CATALOG, "trigger", ["b1"])])  # dropped: learned before the rollback was adopted
        assert wait_for(lambda: service.updater.approved_version(CATALOG), lambda v: v == rolled_back) == rolled_back

        produce(shown_with_features("c", showings[80:], seconds=14400))
        after = latest_when(service, lambda s: s.version > rolled_back and s.params.bandit != republished.params.bandit)
    finally:
        service.close()

    # Learned on from the rolled-back state: the third batch only, never the undone second one.
    expected = CatalogBandits(bandit_settings.policy_bandit_config, max_bundles=bandit_settings.policy_max_arms)
    expected.load(CATALOG, first.params.bandit)
    for closed in closed_impressions(showings[80:]):
        expected.observe(closed)
    replayed = expected.snapshot(CATALOG, closed_through=None)
    assert after.params.bandit is not None
    assert after.params.bandit.weights == pytest.approx(replayed.weights, rel=1e-9, abs=1e-12)
    assert after.params.bandit.learning.bundles.keys() == replayed.learning.bundles.keys()
    assert after.params.bandit.learning.explored_shown == replayed.learning.explored_shown
