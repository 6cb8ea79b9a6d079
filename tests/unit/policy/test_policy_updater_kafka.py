"""The policy updater as wired for production, against the real Kafka and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine

from services.policy.postgres_snapshots import PostgresSnapshotStore
from services.policy.settings import PolicySettings
from services.policy.updater import PolicyUpdater
from services.policy.wiring import PolicyService, consumer_group
from shared.events import Event
from shared.kafka import make_consumer
from tests.unit.policy.policy_testkit import (
    click,
    counts,
    impression,
    item_view,
    learner,
    purchase,
    wait_for,
)

pytestmark = pytest.mark.integration

Produce = Callable[[list[Event | bytes]], None]


def already_counted() -> float:
    return REGISTRY.get_sample_value("bundlewise_policy_outcomes_total", {"kind": "already_counted"}) or 0.0


def latest_counts(service: PolicyService, catalog: str) -> dict[str, tuple[int, int]]:
    snapshot = service.store.latest(catalog)
    return counts(snapshot.params if snapshot else None)


def wait_for_counts(service: PolicyService, catalog: str, expected: dict[str, tuple[int, int]]) -> None:
    assert wait_for(lambda: latest_counts(service, catalog), lambda c: c == expected) == expected


def test_publishes_a_snapshot_whose_arms_reflect_the_produced_events(
    start_service: Callable[..., PolicyService], produce: Produce
) -> None:
    service = start_service()
    produce(
        [
            impression("shop", "imp-1", ["b1", "b2"], user="u1"),
            impression("shop", "imp-2", ["b1"], user="u2"),
            click("shop", "imp-1", "b1", user="u1"),
            click("shop", "imp-1", "b1", user="u1"),  # a retried click
            click("shop", None, "b2", user="u3"),  # a browsed bundle, not from an impression
            purchase("shop", "imp-1", "b1", user="u1"),
            item_view("shop", "item-9", user="u4"),
            b"{not an event",
            impression("books", "imp-1", ["b1"], user="u1"),
        ]
    )

    wait_for_counts(service, "shop", {"b1": (2, 1), "b2": (1, 0)})
    wait_for_counts(service, "books", {"b1": (1, 0)})
    snapshot = service.store.latest("shop")
    assert snapshot is not None
    assert [(a.bundle_id, a.alpha, a.beta) for a in snapshot.params.arms] == [("b1", 2.0, 21.0), ("b2", 1.0, 21.0)]
    assert (snapshot.params.temperature, snapshot.params.ctr_weight) == (0.1, 1.0)


def test_a_restarted_updater_keeps_what_was_learned_and_counts_each_event_once(
    start_service: Callable[..., PolicyService], produce: Produce
) -> None:
    first = start_service()
    produce([impression("shop", "imp-1", ["b1", "b2"]), click("shop", "imp-1", "b1")])
    wait_for_counts(first, "shop", {"b1": (1, 1), "b2": (1, 0)})
    first.close()
    skipped_before = already_counted()

    second = start_service()
    produce([impression("shop", "imp-2", ["b1"], user="u2"), click("shop", "imp-2", "b1", user="u2")])
    wait_for_counts(second, "shop", {"b1": (2, 2), "b2": (1, 0)})
    second.close()

    # The first updater committed everything it read, so the second one resumed after it.
    assert already_counted() - skipped_before == 0

    final = second.store.latest("shop")
    assert final is not None
    assert counts(final.params) == {"b1": (2, 2), "b2": (1, 0)}


class CommitsNothing:
    """A real consumer whose commits are lost, as when the process dies right after publishing."""

    def __init__(self, settings: PolicySettings) -> None:
        self._consumer = make_consumer(
            settings.kafka_bootstrap, consumer_group(settings.namespace), [settings.events_topic], "policytest"
        )

    def poll(self, timeout_ms: int = 0) -> Any:
        return self._consumer.poll(timeout_ms=timeout_ms)

    def commit(self, offsets: Any = None) -> None:
        pass

    def close(self) -> None:
        self._consumer.close()


def test_events_re_read_after_a_crash_before_the_commit_are_not_counted_twice(
    settings: PolicySettings, engine: Engine, start_service: Callable[..., PolicyService], produce: Produce
) -> None:
    store = PostgresSnapshotStore(engine)
    crashed = PolicyUpdater(
        store,
        learner(),
        consumer_factory=lambda: CommitsNothing(settings),
        publish_every_s=0.2,
        publish_every_outcomes=1000,
    )
    crashed.start()
    produce([impression("shop", "imp-1", ["b1"]), click("shop", "imp-1", "b1")])
    published = wait_for(lambda: store.latest("shop"), lambda s: counts(s.params if s else None) == {"b1": (1, 1)})
    crashed.stop()
    assert published is not None
    assert counts(published.params) == {"b1": (1, 1)}
    skipped_before = already_counted()

    second = start_service()
    produce([impression("shop", "imp-2", ["b1"], user="u2")])
    wait_for_counts(second, "shop", {"b1": (2, 1)})
    second.close()

    # Nothing was committed: the second updater read both earlier events again and skipped them.
    assert already_counted() - skipped_before == 2

    final = store.latest("shop")
    assert final is not None
    assert counts(final.params) == {"b1": (2, 1)}
