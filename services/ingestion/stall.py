"""Noticing a Kafka consumer that is alive but no longer consuming.

A group consumer can wedge after a coordinator change: it keeps its process, its heartbeat thread
and its metrics endpoint, yet never finishes joining its group, or holds partitions and fetches
nothing while events wait. A new consumer, reading on from the committed offsets, cures it and
costs nothing since every write is idempotent, so the loop asks a :class:`StallWatch` when to.

A member that joined and was given no partitions (more members than partitions) is healthy: it
is a standby. :class:`GroupMembership` tells the two apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kafka import ConsumerRebalanceListener, TopicPartition


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
