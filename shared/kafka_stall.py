"""Noticing a Kafka group consumer that is alive but no longer consuming.

A group consumer can wedge after a coordinator change: it keeps its process, its heartbeat thread
and its metrics endpoint, yet never finishes joining its group, or holds partitions and fetches
nothing while events wait. A new consumer, reading on from the committed offsets, cures it, so a
consuming loop asks a :class:`ConsumerStallCheck` when to make one. The loop does the replacing
itself: only it knows what must be committed first and what reading again costs.

A member that joined and was given no partitions (more members than partitions) is healthy: it
is a standby. :class:`GroupMembership` tells the two apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaError

# How often a consumer is checked at most (one end-offsets request per check).
STALL_CHECK_EVERY_S = 5.0
END_OFFSETS_TIMEOUT_MS = 2_000


class GroupMembership(ConsumerRebalanceListener):  # type: ignore[misc]
    """Whether the consumer has finished joining its group (its assignment, maybe empty, is settled)."""

    def __init__(self) -> None:
        self.settled = False

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.settled = False  # a rebalance began

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.settled = True


@dataclass
class StallWatch:
    """Decides when a consumer has stalled: for longer than ``stall_after_s`` it has not been a
    settled member of its group, or has had events waiting on its partitions while polling
    returned none.

    A consumer that is caught up and idle is healthy however long it waits.
    """

    stall_after_s: float
    clock: Callable[[], float] = time.monotonic
    _healthy_at: float = field(init=False)

    def __post_init__(self) -> None:
        self._healthy_at = self.clock()

    def consumed(self) -> None:
        """A poll returned records: the consumer works."""
        self._healthy_at = self.clock()

    def stalled(self, settled: bool, behind: bool) -> bool:
        """True once the consumer has been out of its group (not ``settled``), or in it and
        ``behind`` its partitions' ends without consuming, for more than ``stall_after_s``."""
        if settled and not behind:
            self._healthy_at = self.clock()
            return False
        return self.clock() - self._healthy_at > self.stall_after_s

    def restarted(self) -> None:
        """A new consumer was made: it gets the full ``stall_after_s`` to join and fetch."""
        self._healthy_at = self.clock()


class PositionedConsumer(Protocol):
    """The part of ``kafka.KafkaConsumer`` a stall check reads."""

    def assignment(self) -> set[TopicPartition]: ...

    def end_offsets(self, partitions: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]: ...

    def position(self, partition: TopicPartition, timeout_ms: int) -> int | None: ...


def events_waiting(consumer: PositionedConsumer) -> bool | None:
    """Whether some partition assigned to ``consumer`` holds events it has not polled yet; None if
    Kafka cannot say (one end-offsets request, bounded by ``END_OFFSETS_TIMEOUT_MS``)."""
    assignment = consumer.assignment()
    if not assignment:
        return False
    try:
        ends = consumer.end_offsets(list(assignment), timeout_ms=END_OFFSETS_TIMEOUT_MS)
    except KafkaError:
        return None
    for partition, end in ends.items():
        try:
            position = consumer.position(partition, timeout_ms=0)
        except KafkaError:  # no position yet: waiting, if the partition holds anything
            position = None
        if end and (position is None or position < end):
            return True
    return False


def stall_reason(settled: bool) -> str:
    """What a stalled consumer failed to do, for the log line that announces its replacement."""
    return "consumed nothing while events wait" if settled else "not finished joining its group"


class ConsumerStallCheck:
    """Asks Kafka, every few seconds at most, whether a consumer has stalled (see :class:`StallWatch`).

    The loop reports each poll that returned records (:meth:`consumed`), asks :meth:`stalled` as
    often as it likes, and calls :meth:`restarted` once it has replaced the consumer.
    """

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._watch = StallWatch(stall_after_s, clock)
        self._clock = clock
        self._check_every_s = min(STALL_CHECK_EVERY_S, stall_after_s / 3)
        self._checked_at = clock()

    @property
    def stall_after_s(self) -> float:
        return self._watch.stall_after_s

    def consumed(self) -> None:
        """A poll returned records: the consumer works."""
        self._watch.consumed()

    def stalled(self, consumer: PositionedConsumer, membership: GroupMembership) -> bool:
        """Whether ``consumer`` (subscribed with ``membership``) has stalled for ``stall_after_s``.

        False between checks, and when the broker does not answer: a broker that is down says
        nothing about the consumer, and a new consumer would not reach it either.
        """
        if self._clock() - self._checked_at < self._check_every_s:
            return False
        self._checked_at = self._clock()
        behind = events_waiting(consumer)
        if behind is None:
            return False
        return self._watch.stalled(membership.settled, behind)

    def restarted(self) -> None:
        """A new consumer was made: it gets the full ``stall_after_s`` to join and fetch."""
        self._watch.restarted()
