"""Reading a stretch of a Kafka topic again, by offsets, with a plain reader that belongs to no group:
it commits nothing and moves no one's offsets. ``bundlewise replay`` (``services/ingestion/replay.py``),
``bundlewise redrive``, the policy's off-policy evaluation and the policy updater's rebuild of its join
window all read the log this way.

:func:`make_reader` makes the reader, :func:`offset_ranges` finds the offsets of a stretch (between two
Kafka timestamps, or given as :class:`OffsetRange`) and :func:`read_ranges` reads them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from shared.tls import kafka_security


@dataclass(frozen=True)
class OffsetRange:
    """Offsets ``start`` (inclusive) to ``end`` (exclusive; None: the end when the replay starts)."""

    partition: int
    start: int
    end: int | None = None


def parse_time(value: str) -> datetime:
    """An ISO 8601 time (``2014-07-22``, ``2014-07-22T10:00:00+02:00``; UTC when no offset given) or
    epoch milliseconds.

    Raises:
        ValueError: neither.
    """
    if value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def epoch_ms(moment: datetime) -> int:
    """``moment`` as a Kafka timestamp (milliseconds since the epoch)."""
    return int(moment.timestamp() * 1000)


class ReplayError(RuntimeError):
    """A replay (a reading again of the log) cannot start or cannot finish; the message says why."""


def make_reader(bootstrap: str, client_id: str, max_poll_records: int = 5000) -> KafkaConsumer:
    """A consumer for assigned partitions: no group, no commits, committed records only."""
    return KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=max_poll_records,
        fetch_max_wait_ms=100,
        **kafka_security().client_options(),
    )


def offset_ranges(
    consumer: KafkaConsumer,
    topic: str,
    kafka_from: datetime | None = None,
    kafka_to: datetime | None = None,
    offsets: Sequence[OffsetRange] = (),
) -> dict[TopicPartition, tuple[int, int]]:
    """Per partition, the offsets ``[start, end)`` to read; ends never pass the current end offsets.

    Raises:
        ReplayError: the topic does not exist, or ``offsets`` names a partition it does not have.
    """
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise ReplayError(f"topic {topic!r} does not exist (or has no partitions)")
    every = [TopicPartition(topic, p) for p in sorted(partitions)]
    begin, end = consumer.beginning_offsets(every), consumer.end_offsets(every)
    if offsets:
        missing = sorted({r.partition for r in offsets} - set(partitions))
        if missing:
            raise ReplayError(f"topic {topic!r} has no partition {missing}; it has {sorted(partitions)}")
        ranges = {}
        for r in offsets:
            tp = TopicPartition(topic, r.partition)
            stop = end[tp] if r.end is None else min(r.end, end[tp])
            ranges[tp] = (max(r.start, begin[tp]), stop)
        return ranges
    starts = dict(begin)
    stops = dict(end)
    if kafka_from is not None:
        for tp, found in consumer.offsets_for_times(dict.fromkeys(every, epoch_ms(kafka_from))).items():
            starts[tp] = end[tp] if found is None else found.offset
    if kafka_to is not None:
        for tp, found in consumer.offsets_for_times(dict.fromkeys(every, epoch_ms(kafka_to))).items():
            stops[tp] = end[tp] if found is None else min(found.offset, end[tp])
    return {tp: (starts[tp], max(starts[tp], stops[tp])) for tp in every}


def read_ranges(
    consumer: KafkaConsumer,
    ranges: Mapping[TopicPartition, tuple[int, int]],
    stall_timeout_s: float = 30.0,
) -> Iterator[list[ConsumerRecord]]:
    """Yields the records of ``ranges`` in chunks, each chunk from one partition in offset order.

    Raises:
        ReplayError: no record arrived for ``stall_timeout_s`` while some range was unfinished.
    """
    pending = {tp: stop for tp, (start, stop) in ranges.items() if stop > start}
    if not pending:
        return
    consumer.assign(list(pending))
    for tp in pending:
        consumer.seek(tp, ranges[tp][0])
    last_progress = time.monotonic()
    while pending:
        for tp, records in consumer.poll(timeout_ms=500).items():
            if tp in pending:
                kept = [r for r in records if r.offset < pending[tp]]
                if kept:
                    last_progress = time.monotonic()
                    yield kept
        for tp in [tp for tp, stop in pending.items() if consumer.position(tp) >= stop]:
            consumer.pause(tp)
            del pending[tp]
        if pending and time.monotonic() - last_progress > stall_timeout_s:
            stuck = ", ".join(f"{tp.partition} at {consumer.position(tp)} of {stop}" for tp, stop in pending.items())
            raise ReplayError(f"no records for {stall_timeout_s:.0f}s; partitions unfinished: {stuck}")


def quiet_kafka_client() -> None:
    """kafka-python warns about its own slow event-loop turns while a command reads at full speed:
    noise on an operator's terminal (connection problems still end the command with an error)."""
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
