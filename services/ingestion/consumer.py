"""The ingestion loop: poll a batch, dead-letter what can never apply, apply the rest, then commit."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import redis
import sqlalchemy.exc
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata

from services.ingestion import metrics
from shared.events import InvalidEvent, parse_event
from shared.kafka import DEADLETTER_REASON_HEADER
from shared.store.feature_updates import DeliveredEvent, FeatureWriter

log = logging.getLogger(__name__)

T = TypeVar("T")
LAG_REPORT_EVERY_S = 5.0

TRANSIENT_ERRORS: dict[type[BaseException], str] = {
    sqlalchemy.exc.OperationalError: "postgres",
    sqlalchemy.exc.InterfaceError: "postgres",
    redis.ConnectionError: "redis",
    redis.TimeoutError: "redis",
    redis.BusyLoadingError: "redis",
}


@dataclass(frozen=True)
class BatchOutcome:
    applied: int
    duplicates: int
    deadlettered: int


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._consumer = consumer
        self._producer = deadletter_producer
        self._deadletter_topic = deadletter_topic
        self._writer = writer
        self._max_batch_records = max_batch_records
        self._retry_max_backoff_s = retry_max_backoff_s
        self._clock = clock
        self._stopping = threading.Event()
        self._lag_reported_at = 0.0
        self.stopped = threading.Event()

    def stop(self) -> None:
        """Asks the loop to finish the batch in hand and return; see :attr:`stopped`."""
        self._stopping.set()

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                polled = self._consumer.poll(timeout_ms=200, max_records=self._max_batch_records)
                if polled:
                    self.process(polled)
                self._report_lag()
        finally:
            self._consumer.close(autocommit=False)
            self._producer.close(timeout=5)
            self.stopped.set()
            log.info("stopped")

    def process(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> BatchOutcome:
        """Handles one polled batch and commits its offsets once its effects are durable."""
        started = time.perf_counter()
        valid: list[DeliveredEvent] = []
        invalid: list[tuple[ConsumerRecord, str]] = []
        for partition, records in polled.items():
            for record in records:
                try:
                    event = parse_event(record.value or b"")
                except InvalidEvent as exc:
                    invalid.append((record, exc.reason))
                    continue
                valid.append(DeliveredEvent(partition.topic, partition.partition, record.offset, event))
        if invalid:
            self._with_retries(lambda: self._deadletter(invalid), "kafka")
        result = self._with_retries(lambda: self._writer.apply(valid), None)
        if result is None:  # stopping while a dependency was down: leave the batch uncommitted
            return BatchOutcome(0, 0, 0)
        self._consumer.commit(
            {
                partition: OffsetAndMetadata(records[-1].offset + 1, "", -1)
                for partition, records in polled.items()
                if records
            }
        )
        self._record_metrics(valid, invalid, result.duplicates, polled)
        metrics.BATCH_DURATION.observe(time.perf_counter() - started)
        return BatchOutcome(result.applied_to_redis, result.duplicates, len(invalid))

    def _deadletter(self, invalid: list[tuple[ConsumerRecord, str]]) -> None:
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
            future.get(timeout=30)
        metrics.DEADLETTERED.inc(len(invalid))
        log.warning("dead-lettered %d invalid events; first reason: %s", len(invalid), invalid[0][1])

    def _with_retries(self, action: Callable[[], T], dependency: str | None) -> T | None:
        """Runs ``action`` until it succeeds, backing off on transient errors; None if stopped."""
        backoff = 0.1
        while True:
            try:
                return action()
            except tuple(TRANSIENT_ERRORS) as exc:
                name = dependency or next(n for t, n in TRANSIENT_ERRORS.items() if isinstance(exc, t))
                metrics.TRANSIENT_FAILURES.labels(name).inc()
                log.warning("%s unavailable (%s); retrying the batch in %.1fs", name, type(exc).__name__, backoff)
            except Exception as exc:
                if dependency != "kafka":
                    raise
                metrics.TRANSIENT_FAILURES.labels("kafka").inc()
                log.warning("dead-letter topic unavailable (%s); retrying in %.1fs", exc, backoff)
            if self._stopping.wait(backoff):
                return None
            backoff = min(backoff * 2, self._retry_max_backoff_s)

    def _record_metrics(
        self,
        valid: list[DeliveredEvent],
        invalid: list[tuple[ConsumerRecord, str]],
        duplicates: int,
        polled: dict[TopicPartition, list[ConsumerRecord]],
    ) -> None:
        by_type = Tally(str(d.event.type) for d in valid)
        for event_type, count in by_type.items():
            metrics.EVENTS_PROCESSED.labels(event_type, "applied").inc(count)
        if duplicates:
            metrics.EVENTS_PROCESSED.labels("any", "duplicate").inc(duplicates)
        if invalid:
            metrics.EVENTS_PROCESSED.labels("invalid", "deadlettered").inc(len(invalid))
        now = self._clock()
        for records in polled.values():
            for record in records:
                if record.timestamp and record.timestamp > 0:
                    metrics.FRESHNESS.observe(max(0.0, now - record.timestamp / 1000))

    def _report_lag(self) -> None:
        assigned = self._consumer.assignment()
        if not assigned or time.monotonic() - self._lag_reported_at < LAG_REPORT_EVERY_S:
            return
        self._lag_reported_at = time.monotonic()
        try:
            ends = self._consumer.end_offsets(list(assigned))
        except Exception:  # lag is best effort; the loop must not die for it
            return
        for partition in assigned:
            position = self._consumer.position(partition)
            metrics.CONSUMER_LAG.labels(str(partition.partition)).set(max(0, ends[partition] - position))
