"""PolicyUpdater's loop with an in-memory store and consumer: what it learns, publishes and commits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.policy.updater import PolicyUpdater
from tests.unit.policy.policy_testkit import (
    FakeConsumer,
    InMemorySnapshotStore,
    click,
    counts,
    impression,
    item_view,
    learner,
    purchase,
    records,
    wait_for,
)

TOPIC = "events"
HOUR_S = 3600.0


class Harness:
    def __init__(self, batches: list[Any], publish_every_s: float = HOUR_S, publish_every_outcomes: int = 10**6):
        self.journal: list[tuple[str, Any]] = []
        self.store = InMemorySnapshotStore(self.journal)
        self.consumer = FakeConsumer(batches, self.journal)
        self.updater = self.new_updater(publish_every_s, publish_every_outcomes)

    def new_updater(self, publish_every_s: float = HOUR_S, publish_every_outcomes: int = 10**6) -> PolicyUpdater:
        return PolicyUpdater(
            self.store,
            learner(),
            consumer_factory=lambda: self.consumer,
            publish_every_s=publish_every_s,
            publish_every_outcomes=publish_every_outcomes,
            poll_timeout_ms=10,
        )

    def run_until_drained(self) -> None:
        self.updater.start()
        assert self.consumer.drained.wait(10)
        self.updater.stop()


@pytest.fixture
def harnesses() -> Iterator[list[Harness]]:
    created: list[Harness] = []
    yield created
    for harness in created:
        harness.updater.stop()


def outcomes(kind: str) -> float:
    return REGISTRY.get_sample_value("bundlewise_policy_outcomes_total", {"kind": kind}) or 0.0


def test_learns_impressions_and_attributed_clicks_and_ignores_the_rest(harnesses: list[Harness]) -> None:
    events = [
        impression("shop", "i1", ["b1", "b2", "b1"]),  # b1 twice in one list: one showing
        impression("shop", "i2", ["b1"]),
        click("shop", "i1", "b1"),
        click("shop", "i1", "b1"),  # the same click again
        click("shop", None, "b2"),  # not from an impression
        purchase("shop", "i1", "b1"),
        item_view("shop", "item-1"),
        b"not json",
    ]
    before = {kind: outcomes(kind) for kind in ("impression", "click", "duplicate", "unattributed", "purchase")}
    before |= {kind: outcomes(kind) for kind in ("other", "invalid")}
    harness = Harness([records(TOPIC, 0, events)])
    harnesses.append(harness)

    harness.run_until_drained()

    latest = harness.store.latest("shop")
    assert counts(latest.params if latest else None) == {"b1": (2, 1), "b2": (1, 0)}
    assert {kind: outcomes(kind) - value for kind, value in before.items()} == {
        "impression": 3,
        "click": 1,
        "duplicate": 1,
        "unattributed": 1,
        "purchase": 1,
        "other": 1,
        "invalid": 1,
    }


def test_offsets_are_committed_only_after_the_snapshot_covering_them_is_published(
    harnesses: list[Harness],
) -> None:
    harness = Harness(
        [
            records(TOPIC, 0, [impression("shop", "i1", ["b1"]), impression("books", "i1", ["b7"])]),
            records(TOPIC, 1, [click("shop", "i1", "b1")], first_offset=5),
        ]
    )
    harnesses.append(harness)

    harness.run_until_drained()

    assert harness.journal == [
        ("publish", ("books", 1)),
        ("publish", ("shop", 1)),
        ("commit", {(TOPIC, 0): 2, (TOPIC, 1): 6}),
    ]
    latest = harness.store.latest("shop")
    assert latest is not None
    assert latest.params.log_positions == {(TOPIC, 0): 2, (TOPIC, 1): 6}
    assert counts(latest.params) == {"b1": (1, 1)}


def test_a_failed_publish_commits_nothing_and_is_retried(harnesses: list[Harness]) -> None:
    harness = Harness([records(TOPIC, 0, [impression("shop", "i1", ["b1"])])], publish_every_s=0.05)
    harnesses.append(harness)
    harness.store.fail_next_publishes = 2

    harness.updater.start()
    wait_for(lambda: list(harness.journal), lambda journal: len(journal) >= 2, timeout_s=10)
    harness.updater.stop()

    assert harness.journal == [("publish", ("shop", 1)), ("commit", {(TOPIC, 0): 1})]


def test_publishes_once_enough_outcomes_were_learned_without_waiting_for_the_timer(
    harnesses: list[Harness],
) -> None:
    harness = Harness(
        [records(TOPIC, 0, [impression("shop", f"i{n}", ["b1"]) for n in range(3)])], publish_every_outcomes=3
    )
    harnesses.append(harness)

    harness.updater.start()
    published = wait_for(lambda: harness.store.latest("shop"), lambda s: s is not None, timeout_s=10)

    assert published is not None
    assert counts(published.params) == {"b1": (3, 0)}


def test_stopping_publishes_and_commits_the_last_batch_and_closes_the_consumer(harnesses: list[Harness]) -> None:
    harness = Harness([records(TOPIC, 2, [impression("shop", "i1", ["b1"])])])
    harnesses.append(harness)

    harness.run_until_drained()

    assert harness.journal == [("publish", ("shop", 1)), ("commit", {(TOPIC, 2): 1})]
    assert harness.consumer.closed


def test_a_restart_resumes_from_the_latest_snapshot_and_skips_events_it_already_counted(
    harnesses: list[Harness],
) -> None:
    first_run = [impression("shop", "i1", ["b1"]), click("shop", "i1", "b1")]
    harness = Harness([records(TOPIC, 0, first_run)])
    harnesses.append(harness)
    harness.run_until_drained()
    before = outcomes("already_counted")

    # As after a crash between publish and commit: the same offsets are delivered again, then new ones.
    harness.consumer.batches = [records(TOPIC, 0, [*first_run, impression("shop", "i2", ["b1"])])]
    harness.consumer.drained.clear()
    harness.updater = harness.new_updater()
    harness.run_until_drained()

    latest = harness.store.latest("shop")
    assert latest is not None
    assert (latest.version, counts(latest.params)) == (2, {"b1": (2, 1)})
    assert outcomes("already_counted") - before == 2


def test_a_redelivered_record_in_the_same_run_counts_once(harnesses: list[Harness]) -> None:
    batch = records(TOPIC, 0, [impression("shop", "i1", ["b1"]), impression("shop", "i2", ["b1"])])
    harness = Harness([batch, batch[1:]])
    harnesses.append(harness)

    harness.run_until_drained()

    latest = harness.store.latest("shop")
    assert counts(latest.params if latest else None) == {"b1": (2, 0)}


def test_an_unexpected_error_marks_the_updater_crashed_and_calls_on_crash(harnesses: list[Harness]) -> None:
    harness = Harness([])
    harnesses.append(harness)
    crashed = []

    def broken_consumer() -> FakeConsumer:
        raise RuntimeError("boom")

    harness.updater = PolicyUpdater(
        harness.store, learner(), broken_consumer, publish_every_s=HOUR_S, publish_every_outcomes=1
    )
    harness.updater.start(on_crash=lambda: crashed.append(True))
    wait_for(lambda: crashed, bool, timeout_s=10)
    harness.updater.stop()

    assert crashed == [True]
    assert harness.updater.crashed
