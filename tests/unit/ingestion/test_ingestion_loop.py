"""How the ingestion loop sorts failures, against in-memory Kafka and storage: no servers needed.

The same behaviour on the real servers, with real outages, is in tests/integration/faults/.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import pytest
import redis
import sqlalchemy.exc
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from services.ingestion.consumer import IngestionLoop
from shared.kafka import DEADLETTER_REASON_HEADER
from shared.store.feature_updates import DeliveredEvent

TOPIC = "events"
PARTITION = TopicPartition(TOPIC, 0)


def event(n: int, **fields: Any) -> bytes:
    body = {
        "type": "view",
        "event_id": f"evt-{n:08d}",
        "catalog_id": "shop",
        "user_id": "u1",
        "event_time": "2014-07-22T10:00:00Z",
        "item_id": "i1",
    }
    return json.dumps(body | fields).encode()


def records(values: Sequence[bytes], first_offset: int = 0) -> dict[TopicPartition, list[ConsumerRecord]]:
    return {
        PARTITION: [
            ConsumerRecord(TOPIC, 0, -1, first_offset + n, 1_000, 0, b"shop:u1", value, [], None, 7, len(value), 0)
            for n, value in enumerate(values)
        ]
    }


class Acked:
    def get(self, timeout: float | None = None) -> None:
        return None


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, list[tuple[str, bytes]]]] = []

    def send(self, topic: str, key: bytes, value: bytes | None, headers: list[tuple[str, bytes]]) -> Acked:
        self.sent.append((topic, value, headers))
        return Acked()

    def close(self, timeout: float | None = None) -> None:
        pass


class FakeConsumer:
    """Hands out ``batches`` one poll at a time; ``commit_errors`` are raised by the first commits."""

    def __init__(self, batches: list[dict[TopicPartition, list[ConsumerRecord]]], loop_stop: threading.Event) -> None:
        self.batches = batches
        self.commit_errors: list[Exception] = []
        self.committed: list[dict[TopicPartition, OffsetAndMetadata]] = []
        self.commit_attempts = 0
        self._drained = loop_stop

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        if not self.batches:
            self._drained.set()
            return {}
        return self.batches.pop(0)

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], timeout_ms: int) -> None:
        self.commit_attempts += 1
        if self.commit_errors:
            raise self.commit_errors.pop(0)
        self.committed.append(offsets)

    def assignment(self) -> set[TopicPartition]:
        return {PARTITION}

    def highwater(self, partition: TopicPartition) -> int | None:
        return None

    def close(self, autocommit: bool) -> None:
        pass


class FakeWriter:
    """Records what reaches each store; ``failures`` are raised by the first PostgreSQL writes."""

    def __init__(self) -> None:
        self.failures: list[Exception] = []
        self.postgres: list[list[int]] = []
        self.redis: list[list[int]] = []

    def write_postgres(self, batch: Sequence[DeliveredEvent]) -> tuple[list[DeliveredEvent], int]:
        if self.failures:
            raise self.failures.pop(0)
        self.postgres.append([d.offset for d in batch])
        return list(batch), len(batch)

    def apply_to_redis(self, owned: Sequence[DeliveredEvent]) -> int:
        self.redis.append([d.offset for d in owned])
        return len(owned)


@pytest.fixture
def parts() -> tuple[FakeConsumer, FakeProducer, FakeWriter, IngestionLoop]:
    drained = threading.Event()
    consumer, producer, writer = FakeConsumer([], drained), FakeProducer(), FakeWriter()
    loop = IngestionLoop(
        consumer=consumer,  # type: ignore[arg-type]
        deadletter_producer=producer,  # type: ignore[arg-type]
        deadletter_topic="dead",
        writer=writer,  # type: ignore[arg-type]
        max_batch_records=100,
        retry_max_backoff_s=0.01,
    )

    def stop_when_drained() -> None:
        drained.wait()
        loop.stop()

    threading.Thread(target=stop_when_drained, daemon=True).start()
    return consumer, producer, writer, loop


def test_events_that_can_never_apply_are_deadlettered_with_their_reason_and_their_neighbours_land(
    parts: tuple[FakeConsumer, FakeProducer, FakeWriter, IngestionLoop],
) -> None:
    consumer, producer, writer, loop = parts
    nul = event(3, context={"page": "a\u0000b"})  # valid JSON and schema; PostgreSQL cannot store it

    outcome = loop.process(records([event(1), b"{not json", nul, event(4)]))

    assert writer.postgres == [[0, 3]]
    assert writer.redis == [[0, 3]]
    assert [(topic, value) for topic, value, _ in producer.sent] == [("dead", b"{not json"), ("dead", nul)]
    reasons = [dict(headers)[DEADLETTER_REASON_HEADER].decode() for _, _, headers in producer.sent]
    assert "Invalid JSON" in reasons[0]
    assert "U+0000" in reasons[1]
    assert consumer.committed == [{PARTITION: OffsetAndMetadata(4, "", -1)}]
    assert outcome.deadlettered == 2


def test_a_postgres_outage_retries_the_same_batch_and_commits_only_after_it_landed(
    parts: tuple[FakeConsumer, FakeProducer, FakeWriter, IngestionLoop],
) -> None:
    consumer, _, writer, loop = parts
    down = sqlalchemy.exc.OperationalError("INSERT", {}, Exception("connection refused"))
    writer.failures = [down, down]

    loop.process(records([event(1), event(2)]))

    assert writer.postgres == [[0, 1]]
    assert consumer.committed == [{PARTITION: OffsetAndMetadata(2, "", -1)}]


def test_a_redis_outage_retries_without_dead_lettering(
    parts: tuple[FakeConsumer, FakeProducer, FakeWriter, IngestionLoop],
) -> None:
    consumer, producer, writer, loop = parts
    calls = {"n": 0}
    applied = writer.apply_to_redis

    def flaky(owned: Sequence[DeliveredEvent]) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise redis.ConnectionError("Connection refused")
        return applied(owned)

    writer.apply_to_redis = flaky  # type: ignore[method-assign]

    loop.process(records([event(1)]))

    assert writer.redis == [[0]]
    assert producer.sent == []
    assert len(consumer.committed) == 1


def test_a_commit_while_kafka_is_unavailable_is_retried(
    parts: tuple[FakeConsumer, FakeProducer, FakeWriter, IngestionLoop],
) -> None:
    consumer, _, _, loop = parts
    consumer.commit_errors = [KafkaTimeoutError("no coordinator"), KafkaTimeoutError("no coordinator")]

    loop.process(records([event(1)]))

    assert consumer.commit_attempts == 3
    assert consumer.committed == [{PARTITION: OffsetAndMetadata(1, "", -1)}]


def test_a_commit_refused_after_a_rebalance_is_given_up_and_the_loop_carries_on(
    parts: tuple[FakeConsumer, FakeProducer, FakeWriter, IngestionLoop],
) -> None:
    consumer, _, writer, loop = parts
    consumer.commit_errors = [CommitFailedError()]

    loop.process(records([event(1)]))
    loop.process(records([event(2)], first_offset=1))

    assert consumer.commit_attempts == 2
    assert consumer.committed == [{PARTITION: OffsetAndMetadata(2, "", -1)}]
    assert writer.redis == [[0], [1]]


def test_the_pipelined_loop_applies_and_commits_batches_in_poll_order(
    parts: tuple[FakeConsumer, FakeProducer, FakeWriter, IngestionLoop],
) -> None:
    consumer, _, writer, loop = parts
    consumer.batches = [records([event(n)], first_offset=n) for n in range(6)]

    loop.run()

    assert writer.postgres == [[n] for n in range(6)]
    assert writer.redis == [[n] for n in range(6)]
    assert consumer.committed == [{PARTITION: OffsetAndMetadata(n + 1, "", -1)} for n in range(6)]
    assert loop.stopped.is_set()
