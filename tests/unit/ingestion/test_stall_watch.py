"""When the ingestion loop gives up on its Kafka consumer and makes a new one."""

from __future__ import annotations

import threading
import time

from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from services.ingestion.consumer import IngestionLoop
from shared.kafka_stall import ConsumerStallCheck, GroupMembership, StallWatch
from tests.unit.ingestion.test_ingestion_loop import FakeProducer, FakeWriter, event, records


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_caught_up_member_is_healthy_however_long_it_idles() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    clock.now = 3600

    assert not watch.stalled(settled=True, behind=False)


def test_a_member_with_events_waiting_that_consumes_none_stalls_after_the_limit() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    clock.now = 29
    assert not watch.stalled(settled=True, behind=True)
    clock.now = 31
    assert watch.stalled(settled=True, behind=True)


def test_consuming_restarts_the_count() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    clock.now = 25
    watch.consumed()
    clock.now = 50

    assert not watch.stalled(settled=True, behind=True)


def test_a_consumer_that_never_finishes_joining_stalls_and_a_new_one_gets_the_full_limit() -> None:
    clock = Clock()
    watch = StallWatch(30, clock)
    clock.now = 31
    assert watch.stalled(settled=False, behind=False)
    watch.restarted()
    clock.now = 60
    assert not watch.stalled(settled=False, behind=False)


def test_the_membership_listener_is_settled_between_an_assignment_and_the_next_revocation() -> None:
    membership = GroupMembership()
    assert not membership.settled
    membership.on_partitions_assigned(set())  # a standby member: joined, given nothing
    assert membership.settled
    membership.on_partitions_revoked(set())
    assert not membership.settled


PARTITION = TopicPartition("events", 0)


class WedgedConsumer:
    """Holds a partition with five events on it and never returns any."""

    def __init__(self) -> None:
        self.closed = False

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[object]]:
        time.sleep(timeout_ms / 1000)
        return {}

    def assignment(self) -> set[TopicPartition]:
        return {PARTITION}

    def end_offsets(self, partitions: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        return {PARTITION: 5}

    def position(self, partition: TopicPartition, timeout_ms: int) -> int:
        return 0

    def highwater(self, partition: TopicPartition) -> int | None:
        return 5

    def close(self, autocommit: bool) -> None:
        self.closed = True


class WorkingConsumer(WedgedConsumer):
    """Returns the five events once, commits, then signals that it is drained."""

    def __init__(self, drained: threading.Event) -> None:
        super().__init__()
        self.batches = [records([event(n) for n in range(5)])]
        self.committed: list[dict[TopicPartition, OffsetAndMetadata]] = []
        self._drained = drained

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[object]]:
        if not self.batches:
            self._drained.set()
            return {}
        return self.batches.pop(0)  # type: ignore[return-value]

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], timeout_ms: int) -> None:
        self.committed.append(offsets)


def test_a_wedged_consumer_is_replaced_and_the_new_one_reads_the_waiting_events() -> None:
    drained = threading.Event()
    wedged, replacement, writer = WedgedConsumer(), WorkingConsumer(drained), FakeWriter()
    membership = GroupMembership()
    membership.on_partitions_assigned({PARTITION})
    loop = IngestionLoop(
        consumer=wedged,  # type: ignore[arg-type]
        membership=membership,
        new_consumer=lambda: (replacement, GroupMembership()),  # type: ignore[arg-type,return-value]
        stall_after_s=0.3,
        deadletter_producer=FakeProducer(),  # type: ignore[arg-type]
        deadletter_topic="dead",
        writer=writer,  # type: ignore[arg-type]
        max_batch_records=100,
        retry_max_backoff_s=0.01,
    )
    runner = threading.Thread(target=loop.run)
    runner.start()
    assert drained.wait(10), "the loop never polled a new consumer"
    loop.stop()
    runner.join(10)

    assert wedged.closed
    assert writer.postgres == [[0, 1, 2, 3, 4]]
    assert replacement.committed[-1][PARTITION].offset == 5


class UnreachableBroker(WedgedConsumer):
    """A wedged consumer whose broker does not answer end-offsets requests until ``answers`` is set."""

    answers = False

    def end_offsets(self, partitions: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        if not self.answers:
            raise KafkaTimeoutError("no answer (test)")
        return super().end_offsets(partitions, timeout_ms)


def test_a_check_concludes_nothing_while_the_broker_does_not_answer() -> None:
    clock, consumer, membership = Clock(), UnreachableBroker(), GroupMembership()
    membership.on_partitions_assigned({PARTITION})
    check = ConsumerStallCheck(30, clock)
    clock.now = 60
    assert not check.stalled(consumer, membership)
    consumer.answers = True
    clock.now = 70
    assert check.stalled(consumer, membership)


def test_a_check_asks_kafka_at_most_every_few_seconds() -> None:
    clock, consumer, membership = Clock(), WedgedConsumer(), GroupMembership()
    membership.on_partitions_assigned({PARTITION})
    check = ConsumerStallCheck(30, clock)
    clock.now = 31
    assert check.stalled(consumer, membership)
    clock.now = 33  # stalled still, but within STALL_CHECK_EVERY_S of the last check
    assert not check.stalled(consumer, membership)
