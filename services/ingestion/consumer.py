"""The ingestion loop: poll a batch, dead-letter what can never apply, apply the rest, then commit.

Failures are sorted into three kinds:

- an event that can never apply (not JSON, not the schema, a string PostgreSQL cannot store) goes
  to the dead-letter topic with its reason, and its neighbours carry on;
- PostgreSQL, Redis or Kafka briefly unavailable: the same batch is retried with backoff, nothing
  is committed meanwhile, and the loop still stops promptly when asked;
- a commit refused because the group rebalanced: the writes are durable and idempotent, so the
  partition's next owner reading the batch again changes nothing; the loop carries on.

:meth:`IngestionLoop.run` overlaps the work of consecutive batches in three stages, each one thread
and first in, first out: the loop polls and parses batch N+2 while the PostgreSQL stage writes batch
N+1 and the Redis stage applies batch N. Redis therefore sees each partition's runs in offset order
(as the watermark requires), and offsets are committed batch after batch, each only once both
stages finished it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import redis
import sqlalchemy.exc
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from kafka.structs import OffsetAndMetadata

from services.ingestion import metrics
from shared.events import InvalidEvent, parse_event
from shared.kafka import DEADLETTER_REASON_HEADER
from shared.kafka_stall import ConsumerStallCheck, GroupMembership, stall_reason
from shared.store.feature_updates import ApplyResult, DeliveredEvent, FeatureWriter

log = logging.getLogger(__name__)

T = TypeVar("T")
LAG_REPORT_EVERY_S = 5.0
POLL_TIMEOUT_MS = 200
# Bounds each commit attempt, so a broker that is down delays the loop, never hangs it.
COMMIT_TIMEOUT_MS = 5_000
DEADLETTER_ACK_TIMEOUT_S = 30.0

TRANSIENT_ERRORS: dict[type[BaseException], str] = {
    sqlalchemy.exc.OperationalError: "postgres",
    sqlalchemy.exc.InterfaceError: "postgres",
    redis.ConnectionError: "redis",
    redis.TimeoutError: "redis",
    redis.BusyLoadingError: "redis",
    KafkaError: "kafka",
}
# The group moved on without this member: another consumer owns the partitions now.
GROUP_MEMBERSHIP_ERRORS = (CommitFailedError, RebalanceInProgressError, IllegalGenerationError, UnknownMemberIdError)

Polled = Mapping[TopicPartition, list[ConsumerRecord]]


@dataclass(frozen=True)
class BatchOutcome:
    applied: int
    duplicates: int
    deadlettered: int


@dataclass
class _Batch:
    """One polled batch, parsed: what to write, what to dead-letter, what to commit after."""

    polled: Polled
    valid: list[DeliveredEvent]
    invalid: list[tuple[ConsumerRecord, str]]
    started: float = field(default_factory=time.perf_counter)

    def offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        return {p: OffsetAndMetadata(records[-1].offset + 1, "", -1) for p, records in self.polled.items() if records}


# The Redis stage's future for a batch, or None when the PostgreSQL stage gave up (stopping).
RedisStage = Future[ApplyResult | None] | None


@dataclass
class _InFlight:
    batch: _Batch
    postgres: Future[RedisStage]

    def done(self) -> bool:
        if not self.postgres.done():
            return False
        redis_stage = self.postgres.result()
        return redis_stage is None or redis_stage.done()

    def result(self) -> ApplyResult | None:
        """Waits for both stages; None when one gave up because the loop is stopping.

        Raises:
            Exception: what a stage raised (neither an invalid event nor a transient failure).
        """
        redis_stage = self.postgres.result()
        return None if redis_stage is None else redis_stage.result()


class IngestionLoop:
    """Consumes the events topic into a :class:`FeatureWriter` until :meth:`stop` is called."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        deadletter_producer: KafkaProducer,
        deadletter_topic: str,
        writer: FeatureWriter,
        max_batch_records: int,
        retry_max_backoff_s: float,
        max_batches_in_flight: int = 2,
        clock: Callable[[], float] = time.time,
        membership: GroupMembership | None = None,
        new_consumer: Callable[[], tuple[KafkaConsumer, GroupMembership]] | None = None,
        stall_after_s: float = 30.0,
    ) -> None:
        """``new_consumer``, when given with the ``membership`` listener of ``consumer``, replaces a
        consumer that stalled (see :mod:`shared.kafka_stall`) for ``stall_after_s``; without
        them the loop keeps the consumer it was given."""
        self._consumer = consumer
        self._membership = membership
        self._new_consumer = new_consumer
        self._stall_check = ConsumerStallCheck(stall_after_s)
        self._producer = deadletter_producer
        self._deadletter_topic = deadletter_topic
        self._writer = writer
        self._max_batch_records = max_batch_records
        self._retry_max_backoff_s = retry_max_backoff_s
        self._max_in_flight = max_batches_in_flight
        self._clock = clock
        self._stopping = threading.Event()
        self._lag_reported_at = 0.0
        self.stopped = threading.Event()

    def stop(self) -> None:
        """Asks the loop to finish the batches in flight and return; see :attr:`stopped`."""
        self._stopping.set()

    def run(self) -> None:
        """Polls and processes batches until :meth:`stop`; closes the consumer and producer after.

        Up to ``max_batches_in_flight`` batches are written while the next is polled (see the module
        docstring). On :meth:`stop`, batches in flight finish (or give up, if a dependency is down)
        and those finished are committed.

        Raises:
            Exception: what :meth:`process` raises for a bug; nothing after the failed batch is committed.
        """
        postgres_stage = ThreadPoolExecutor(1, thread_name_prefix="ingestion-postgres")
        redis_stage = ThreadPoolExecutor(1, thread_name_prefix="ingestion-redis")
        in_flight: deque[_InFlight] = deque()
        try:
            while not self._stopping.is_set():
                self._commit_finished(in_flight, wait=len(in_flight) >= self._max_in_flight)
                if len(in_flight) >= self._max_in_flight:
                    continue
                polled = self._consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=self._max_batch_records)
                if polled:
                    self._stall_check.consumed()
                    batch = self._parse(polled)
                    in_flight.append(_InFlight(batch, postgres_stage.submit(self._postgres_stage, batch, redis_stage)))
                self._report_lag()
                if self._consumer_stalled():
                    self._replace_consumer(in_flight)
            while in_flight:
                self._commit_finished(in_flight, wait=True)
        finally:
            self._stopping.set()  # a stage still retrying gives up
            postgres_stage.shutdown(wait=True)
            redis_stage.shutdown(wait=True)
            self._consumer.close(autocommit=False)
            self._producer.close(timeout=5)
            self.stopped.set()
            log.info("stopped")

    def process(self, polled: Polled) -> BatchOutcome:
        """Handles one polled batch, start to end, and commits its offsets once its effects are durable.

        Raises:
            Exception: an error that is neither an invalid event nor a transient failure (a bug);
                nothing of the batch is committed, so a restarted process reads it again.
        """
        batch = self._parse(polled)
        redis_future = self._postgres_stage(batch, None)
        result = None if redis_future is None else redis_future.result()
        return self._finish(batch, result)

    def _parse(self, polled: Polled) -> _Batch:
        valid: list[DeliveredEvent] = []
        invalid: list[tuple[ConsumerRecord, str]] = []
        for partition, records in polled.items():
            topic, number = partition.topic, partition.partition
            for record in records:
                raw: bytes = record.value or b""
                try:
                    event = parse_event(raw)  # refuses what PostgreSQL cannot store, such as U+0000
                except InvalidEvent as exc:
                    invalid.append((record, exc.reason))
                    continue
                written_ms = record.timestamp if record.timestamp and record.timestamp > 0 else None
                valid.append(DeliveredEvent(topic, number, record.offset, event, raw, written_ms))
        return _Batch(polled, valid, invalid)

    def _postgres_stage(self, batch: _Batch, redis_stage: ThreadPoolExecutor | None) -> RedisStage:
        """Dead-letters the invalid events, writes the valid ones to PostgreSQL, then hands the owned
        ones to the Redis stage (run inline when ``redis_stage`` is None). None if stopped meanwhile."""
        if batch.invalid and self._with_retries(lambda: self._deadletter(batch.invalid)) is None:
            return None
        written = self._with_retries(lambda: self._writer.write_postgres(batch.valid))
        if written is None:
            return None
        owned, inserted = written
        result = ApplyResult(inserted=inserted, duplicates=len(batch.valid) - len(owned), applied_to_redis=0)
        if redis_stage is None:
            done: Future[ApplyResult | None] = Future()
            done.set_result(self._redis_stage(owned, result))
            return done
        return redis_stage.submit(self._redis_stage, owned, result)

    def _redis_stage(self, owned: list[DeliveredEvent], result: ApplyResult) -> ApplyResult | None:
        applied = self._with_retries(lambda: self._writer.apply_to_redis(owned))
        if applied is None:
            return None
        return ApplyResult(result.inserted, result.duplicates, applied)

    def _commit_finished(self, in_flight: deque[_InFlight], wait: bool) -> None:
        """Commits the finished batches at the head of ``in_flight``, in order; waits for the head if
        ``wait``. A batch given up on (stopping) ends it: nothing after it may be committed."""
        while in_flight and (wait or in_flight[0].done()):
            head = in_flight.popleft()
            result = head.result()
            self._finish(head.batch, result)
            if result is None:
                in_flight.clear()
                return
            wait = False

    def _finish(self, batch: _Batch, result: ApplyResult | None) -> BatchOutcome:
        if result is None:  # stopping while a dependency was down: leave the batch uncommitted
            return BatchOutcome(0, 0, 0)
        self._record_metrics(batch.valid, batch.invalid, result.duplicates, batch.polled)
        self._commit(batch.offsets())
        metrics.BATCH_DURATION.observe(time.perf_counter() - batch.started)
        return BatchOutcome(result.applied_to_redis, result.duplicates, len(batch.invalid))

    def _deadletter(self, invalid: list[tuple[ConsumerRecord, str]]) -> int:
        """Sends ``invalid`` to the dead-letter topic with their reasons; returns how many, once acknowledged."""
        futures = []
        for record, reason in invalid:
            headers = [
                (DEADLETTER_REASON_HEADER, reason.encode()[:4000]),
                ("bundlewise-source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
            ]
            futures.append(
                self._producer.send(self._deadletter_topic, key=record.key, value=record.value, headers=headers)
            )
        for future in futures:
            future.get(timeout=DEADLETTER_ACK_TIMEOUT_S)
        metrics.DEADLETTERED.inc(len(invalid))
        log.warning("dead-lettered %d invalid events; first reason: %s", len(invalid), invalid[0][1])
        return len(invalid)

    def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Commits ``offsets``, retrying while Kafka is unavailable; gives up when the group moved on."""
        backoff = 0.1
        while True:
            try:
                self._consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)
                return
            except GROUP_MEMBERSHIP_ERRORS as exc:
                metrics.COMMITS_ABANDONED.inc()
                log.warning(
                    "offsets not committed (%s): the partitions' next owner reads the batch again, "
                    "which changes nothing",
                    type(exc).__name__,
                )
                return
            except KafkaError as exc:
                metrics.TRANSIENT_FAILURES.labels("kafka").inc()
                log.warning("cannot commit offsets (%s); retrying in %.1fs", type(exc).__name__, backoff)
            if self._stopping.wait(backoff):
                return  # durable already; the next start reads the batch again, which changes nothing
            backoff = min(backoff * 2, self._retry_max_backoff_s)

    def _with_retries(self, action: Callable[[], T]) -> T | None:
        """Runs ``action`` until it succeeds, backing off on transient errors; None if stopped first
        (so ``action`` itself must never return None)."""
        backoff = 0.1
        while True:
            try:
                return action()
            except tuple(TRANSIENT_ERRORS) as exc:
                name = next(n for t, n in TRANSIENT_ERRORS.items() if isinstance(exc, t))
                metrics.TRANSIENT_FAILURES.labels(name).inc()
                log.warning("%s unavailable (%s); retrying the batch in %.1fs", name, type(exc).__name__, backoff)
            if self._stopping.wait(backoff):
                return None
            backoff = min(backoff * 2, self._retry_max_backoff_s)

    def _record_metrics(
        self,
        valid: list[DeliveredEvent],
        invalid: list[tuple[ConsumerRecord, str]],
        duplicates: int,
        polled: Polled,
    ) -> None:
        by_type = Tally(d.event.type for d in valid)
        for event_type, count in by_type.items():
            metrics.EVENTS_PROCESSED.labels(event_type, "applied").inc(count)
        if duplicates:
            metrics.EVENTS_PROCESSED.labels("any", "duplicate").inc(duplicates)
        if invalid:
            metrics.EVENTS_PROCESSED.labels("invalid", "deadlettered").inc(len(invalid))
        now_ms = self._clock() * 1000
        observe = metrics.FRESHNESS.observe
        for records in polled.values():
            for record in records:
                if record.timestamp and record.timestamp > 0:
                    observe(max(0.0, now_ms - record.timestamp) / 1000)

    def _consumer_stalled(self) -> bool:
        """Whether the consumer has stalled (never without a way to replace it); updates the gauges."""
        metrics.ASSIGNED_PARTITIONS.set(len(self._consumer.assignment()))
        if self._membership is None:
            return False
        metrics.GROUP_MEMBER.set(1 if self._membership.settled else 0)
        return self._new_consumer is not None and self._stall_check.stalled(self._consumer, self._membership)

    def _replace_consumer(self, in_flight: deque[_InFlight]) -> None:
        """Commits what is in flight, closes the stalled consumer and joins the group with a new one,
        which reads on from the committed offsets."""
        assert self._new_consumer is not None
        assert self._membership is not None
        while in_flight:
            self._commit_finished(in_flight, wait=True)
        log.warning(
            "the Kafka consumer has %s for %.0fs; replacing it with a new one",
            stall_reason(self._membership.settled),
            self._stall_check.stall_after_s,
        )
        try:
            self._consumer.close(autocommit=False)
        except KafkaError as exc:
            log.warning("closing the stalled consumer failed (%s); carrying on with a new one", exc)
        self._consumer, self._membership = self._new_consumer()
        self._stall_check.restarted()
        metrics.CONSUMER_REPLACEMENTS.inc()

    def _report_lag(self) -> None:
        """Lag from what the fetcher last heard of each partition's end: no broker round trip."""
        if time.monotonic() - self._lag_reported_at < LAG_REPORT_EVERY_S:
            return
        self._lag_reported_at = time.monotonic()
        for partition in self._consumer.assignment():
            end = self._consumer.highwater(partition)
            if end is None:
                continue
            try:
                position = self._consumer.position(partition, timeout_ms=0)
            except KafkaError:  # not known yet (fresh assignment); next time
                continue
            if position is not None:
                metrics.CONSUMER_LAG.labels(str(partition.partition)).set(max(0, end - position))
