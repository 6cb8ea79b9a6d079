"""When the policy updater gives up on its Kafka consumer and makes a new one."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import TopicPartition
from prometheus_client import REGISTRY

from services.policy.metrics import GROUP_MEMBER
from services.policy.updater import PolicyUpdater
from shared.kafka_stall import GroupMembership
from tests.unit.policy.policy_testkit import (
    FakeConsumer,
    FakeRecord,
    InMemorySnapshotStore,
    click,
    counts,
    impression,
    learner,
    records,
    wait_for,
)

TOPIC = "events"
PARTITION = TopicPartition(TOPIC, 0)
HOUR_S = 3600.0


@dataclass
class PartitionConsumer(FakeConsumer):
    """A FakeConsumer holding ``PARTITION``, which ends at ``end``; its position follows what it polled."""

    end: int = 0
    polled_up_to: int = 0
    assigned: set[TopicPartition] = field(default_factory=lambda: {PARTITION})

    def poll(self, timeout_ms: int = 0) -> Mapping[Any, list[Any]]:
        polled = super().poll(timeout_ms)
        for batch in polled.values():
            self.polled_up_to = batch[-1].offset + 1
        return polled

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def end_offsets(self, partitions: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, self.end)

    def position(self, partition: TopicPartition, timeout_ms: int) -> int:
        return self.polled_up_to


def settled() -> GroupMembership:
    membership = GroupMembership()
    membership.on_partitions_assigned({PARTITION})
    return membership


def wedged(end: int) -> PartitionConsumer:
    """Holds the partition with ``end`` events on it and never returns any."""
    return PartitionConsumer([], end=end)


def updater(
    store: InMemorySnapshotStore,
    subscriptions: list[tuple[PartitionConsumer, GroupMembership]],
    stall_after_s: float = 0.3,
) -> tuple[PolicyUpdater, Callable[[], int]]:
    """An updater whose factory hands out ``subscriptions`` in order; also how many it handed out."""
    handed_out = iter(subscriptions)
    made = []

    def factory() -> tuple[PartitionConsumer, GroupMembership]:
        made.append(next(handed_out))
        return made[-1]

    updater = PolicyUpdater(
        store,
        learner(),
        consumer_factory=factory,
        publish_every_s=HOUR_S,
        publish_every_outcomes=10**6,
        poll_timeout_ms=10,
        stall_after_s=stall_after_s,
    )
    return updater, lambda: len(made)


@pytest.fixture
def updaters() -> Iterator[list[PolicyUpdater]]:
    started: list[PolicyUpdater] = []
    yield started
    for started_updater in started:
        started_updater.stop()


def replacements() -> float:
    return REGISTRY.get_sample_value("bundlewise_policy_consumer_replacements_total") or 0.0


def group_member() -> float | None:
    return REGISTRY.get_sample_value("bundlewise_policy_group_member")


def events_on_the_partition() -> list[FakeRecord]:
    return records(TOPIC, 0, [impression("shop", "i1", ["b1"]), click("shop", "i1", "b1")])


@pytest.mark.parametrize(
    "membership",
    [settled(), GroupMembership()],
    ids=["settled, consuming nothing while events wait", "never finishing joining"],
)
def test_a_stalled_consumer_is_closed_and_the_new_one_reads_the_waiting_events(
    membership: GroupMembership, updaters: list[PolicyUpdater]
) -> None:
    journal: list[tuple[str, Any]] = []
    store = InMemorySnapshotStore(journal)
    stalled = wedged(end=2)
    working = PartitionConsumer([events_on_the_partition()], journal, end=2)
    policy_updater, consumers_made = updater(store, [(stalled, membership), (working, settled())])
    updaters.append(policy_updater)
    replaced_before = replacements()

    policy_updater.start()
    assert working.drained.wait(10), "the updater never polled a new consumer"
    policy_updater.stop()

    assert stalled.closed
    assert consumers_made() == 2
    assert replacements() - replaced_before == 1
    latest = store.latest("shop")
    assert counts(latest.params if latest else None) == {"b1": (1, 1)}
    assert journal[-1] == ("commit", {(TOPIC, 0): 2})


def test_a_caught_up_member_is_kept_however_long_it_idles(updaters: list[PolicyUpdater]) -> None:
    store = InMemorySnapshotStore()
    idle = PartitionConsumer([events_on_the_partition()], end=2)
    policy_updater, consumers_made = updater(store, [(idle, settled())])
    updaters.append(policy_updater)

    policy_updater.start()
    assert idle.drained.wait(10)
    time.sleep(1.0)  # more than three times stall_after_s: several checks found it caught up

    assert consumers_made() == 1
    assert not idle.closed
    assert not policy_updater.crashed


def test_the_group_member_gauge_is_1_between_an_assignment_and_the_next_revocation(
    updaters: list[PolicyUpdater],
) -> None:
    membership = GroupMembership()
    consumer = PartitionConsumer([], assigned=set())
    policy_updater, _ = updater(InMemorySnapshotStore(), [(consumer, membership)], stall_after_s=HOUR_S)
    updaters.append(policy_updater)
    GROUP_MEMBER.set(-1)  # so that each reading below is one the updater wrote

    policy_updater.start()
    assert wait_for(group_member, lambda v: v == 0, timeout_s=10) == 0
    membership.on_partitions_assigned(set())
    assert wait_for(group_member, lambda v: v == 1, timeout_s=10) == 1
    membership.on_partitions_revoked(set())
    assert wait_for(group_member, lambda v: v == 0, timeout_s=10) == 0
