"""``bundlewise replay``: re-reads a stretch of an events topic and sends it somewhere safe.

What is read: one topic, every partition (or the partitions of ``--offsets``), from the offsets of
``--from`` (a Kafka timestamp, via offsets_for_times) or the beginning, up to ``--to`` or the end
offsets captured when the replay starts, so a replay of a busy topic terminates. Events may further
be filtered by event time, type, catalog and user. Reading uses a plain consumer with assigned
partitions and no group (:mod:`shared.kafka_replay`): it commits nothing and moves no one's offsets.

Where it goes, one of:

* ``--to-topic T``: each selected record is produced again, with its original key, value and headers
  (plus ``bundlewise-replay-source``), so it lands on the same partition number for the same shopper;
* ``--namespace NS``: the events are applied to NS's own PostgreSQL schema and Redis prefix through
  the same :class:`~shared.store.feature_updates.FeatureWriter` as live ingestion, after NS is
  migrated and the catalogs are copied into it from the source namespace. Never ``live``;
* ``--dry-run``: nothing is written; the summary counts what would be, by type.

Every replay leaves out the events of users deleted on request (the source namespace's privacy
deny-list, see ``shared.store.privacy``). ``--rate`` caps events per second; ``--speedup`` keeps the
event-time gaps between events, divided by the factor. A progress line goes to stderr and a summary
to stdout (``--json``: one JSON object instead).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TextIO

import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from sqlalchemy import Engine, select, text

from shared.events import Event, EventType, InvalidEvent, parse_event
from shared.kafka import ensure_topics, make_producer
from shared.kafka_replay import (
    OffsetRange,
    ReplayError,
    epoch_ms,
    make_reader,
    offset_ranges,
    parse_time,
    quiet_kafka_client,
    read_ranges,
)
from shared.log import configure_logging
from shared.settings import KafkaSettings, PostgresSettings, RedisSettings, SettingsError, load_settings
from shared.store import tables
from shared.store.catalog import CatalogWriter
from shared.store.feature_updates import DeliveredEvent, FeatureWriter
from shared.store.migrate import make_engine, upgrade_to_head
from shared.store.privacy import DenyList, DenyListUnavailable, load_denylist

log = logging.getLogger(__name__)

REPLAY_SOURCE_HEADER = "bundlewise-replay-source"
NAMESPACE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
PROTECTED_NAMESPACE = "live"
# Catalog tables copied into a replay namespace, parents first.
CATALOG_TABLES = (tables.catalogs, tables.items, tables.bundles, tables.bundle_items)


# --- what to read -----------------------------------------------------------------------------


def parse_offsets(spec: str) -> tuple[OffsetRange, ...]:
    """``"0:100-200,1:50-,2"``: partition 0 offsets 100..199, partition 1 from 50, all of partition 2.

    Raises:
        ValueError: a part is not ``P``, ``P:START-`` or ``P:START-END`` with START <= END, or a
            partition appears twice.
    """
    ranges: list[OffsetRange] = []
    for part in (p.strip() for p in spec.split(",")):
        match = re.fullmatch(r"(\d+)(?::(\d+)-(\d*))?", part)
        if match is None:
            raise ValueError(f"{part!r} is not P, P:START- or P:START-END (END exclusive)")
        partition, start, end = match.groups()
        offset_range = OffsetRange(int(partition), int(start or 0), int(end) if end else None)
        if offset_range.end is not None and offset_range.end < offset_range.start:
            raise ValueError(f"{part!r}: END is before START")
        ranges.append(offset_range)
    partitions = [r.partition for r in ranges]
    if len(set(partitions)) != len(partitions):
        raise ValueError("a partition appears more than once in --offsets")
    return tuple(ranges)


@dataclass(frozen=True)
class EventFilter:
    """Which valid events a replay keeps; an empty set or None means no condition.

    The event-time bounds are ``[event_time_from, event_time_to)``.
    """

    types: frozenset[str] = frozenset()
    user_ids: frozenset[str] = frozenset()
    catalog_ids: frozenset[str] = frozenset()
    event_time_from: datetime | None = None
    event_time_to: datetime | None = None

    def accepts(self, event: Event) -> bool:
        if self.types and event.type not in self.types:
            return False
        if self.catalog_ids and event.catalog_id not in self.catalog_ids:
            return False
        if self.user_ids and event.user_id not in self.user_ids:
            return False
        if self.event_time_from is not None and event.event_time < self.event_time_from:
            return False
        return self.event_time_to is None or event.event_time < self.event_time_to


@dataclass(frozen=True)
class ReplayOptions:
    """A parsed ``bundlewise replay`` command line."""

    topic: str | None
    kafka_from: datetime | None
    kafka_to: datetime | None
    offsets: tuple[OffsetRange, ...]
    event_filter: EventFilter
    to_topic: str | None
    namespace: str | None
    dry_run: bool
    rate: float | None
    speedup: float | None
    source_namespace: str | None
    batch_size: int
    as_json: bool
    quiet: bool


def _comma_list(values: Sequence[str] | None) -> frozenset[str]:
    return frozenset(v.strip() for value in values or () for v in value.split(",") if v.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bundlewise replay",
        description="Replays a stretch of an events topic into another topic or an isolated namespace "
        "(see docs/replay.md).",
    )
    source = parser.add_argument_group("what to read")
    source.add_argument("--topic", help="the topic to read (default: $BUNDLEWISE_EVENTS_TOPIC)")
    source.add_argument(
        "--from",
        dest="kafka_from",
        metavar="TIME",
        type=parse_time,
        help="first Kafka timestamp (ISO 8601, UTC by default, or ms)",
    )
    source.add_argument("--to", dest="kafka_to", metavar="TIME", type=parse_time, help="end Kafka timestamp, exclusive")
    source.add_argument(
        "--offsets",
        metavar="SPEC",
        type=parse_offsets,
        default=(),
        help="explicit offsets instead of --from/--to: P, P:START- or P:START-END (END exclusive), comma-separated",
    )
    source.add_argument(
        "--event-time-from", metavar="TIME", type=parse_time, help="keep events whose event_time is at or after"
    )
    source.add_argument(
        "--event-time-to", metavar="TIME", type=parse_time, help="keep events whose event_time is before"
    )
    source.add_argument(
        "--type",
        dest="types",
        action="append",
        metavar="TYPE",
        help=f"keep only these event types (repeat or comma-separate): {', '.join(t.value for t in EventType)}",
    )
    source.add_argument("--user", dest="users", action="append", metavar="USER_ID", help="keep only these users")
    source.add_argument("--catalog", dest="catalogs", action="append", metavar="CATALOG_ID", help="keep only these")
    target = parser.add_argument_group("where it goes (exactly one)")
    targets = target.add_mutually_exclusive_group(required=True)
    targets.add_argument("--to-topic", help="produce the selected records to this topic, keyed as the original")
    targets.add_argument("--namespace", help="apply the selected events to this namespace (never live)")
    targets.add_argument("--dry-run", action="store_true", help="write nothing; count what would be replayed")
    pacing = parser.add_mutually_exclusive_group()
    pacing.add_argument("--rate", type=float, help="at most this many events per second")
    pacing.add_argument("--speedup", type=float, help="keep event-time gaps, divided by this factor")
    parser.add_argument(
        "--source-namespace",
        help="namespace whose deny-list and catalogs apply (default: $BUNDLEWISE_NAMESPACE)",
    )
    parser.add_argument("--batch-size", type=int, default=2000, help="events per write (default 2000)")
    parser.add_argument("--json", dest="as_json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def parse_args(argv: Sequence[str] | None) -> ReplayOptions:
    """Parses and checks a command line; exits with status 2 and a message when it is unusable."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.offsets and (args.kafka_from or args.kafka_to):
        parser.error("--offsets selects offsets directly; drop --from/--to (or use --event-time-from/-to)")
    if args.kafka_from and args.kafka_to and args.kafka_to <= args.kafka_from:
        parser.error("--to must be after --from")
    if args.namespace is not None:
        if not NAMESPACE_PATTERN.fullmatch(args.namespace):
            parser.error(f"--namespace {args.namespace!r} must match {NAMESPACE_PATTERN.pattern}")
        if args.namespace == PROTECTED_NAMESPACE:
            parser.error("a replay never writes to the live namespace; choose a namespace of your own")
    if args.source_namespace is not None and not NAMESPACE_PATTERN.fullmatch(args.source_namespace):
        parser.error(f"--source-namespace must match {NAMESPACE_PATTERN.pattern}")
    for name in ("rate", "speedup"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name} must be positive")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    types = _comma_list(args.types)
    unknown = sorted(types - {t.value for t in EventType})
    if unknown:
        parser.error(f"unknown event type(s) {', '.join(unknown)}")
    return ReplayOptions(
        topic=args.topic,
        kafka_from=args.kafka_from,
        kafka_to=args.kafka_to,
        offsets=args.offsets,
        event_filter=EventFilter(
            types=types,
            user_ids=_comma_list(args.users),
            catalog_ids=_comma_list(args.catalogs),
            event_time_from=args.event_time_from,
            event_time_to=args.event_time_to,
        ),
        to_topic=args.to_topic,
        namespace=args.namespace,
        dry_run=args.dry_run,
        rate=args.rate,
        speedup=args.speedup,
        source_namespace=args.source_namespace,
        batch_size=args.batch_size,
        as_json=args.as_json,
        quiet=args.quiet,
    )


# --- pacing and progress ----------------------------------------------------------------------


class Pacer:
    """When the next event is due: ``rate`` events per second, or event-time gaps / ``speedup``.

    With a speed-up, gaps are measured on the latest event time seen so far: Kafka orders events
    only within a partition, so a chunk of another partition's earlier events goes out at once.
    """

    def __init__(
        self, rate: float | None = None, speedup: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate is not None and speedup is not None:
            raise ValueError("a rate or a speed-up, not both")
        self._rate = rate
        self._speedup = speedup
        self._clock = clock
        self._started: float | None = None
        self._count = 0
        self._first_time: float | None = None
        self._latest_time = 0.0

    def due_in(self, event_time: datetime) -> float:
        """Registers the next event; returns how many seconds to wait before sending it (0: now)."""
        now = self._clock()
        if self._started is None:
            self._started = now
        if self._rate is not None:
            due = self._started + self._count / self._rate
            self._count += 1
            return max(0.0, due - now)
        if self._speedup is not None:
            moment = event_time.timestamp()
            if self._first_time is None:
                self._first_time = self._latest_time = moment
            self._latest_time = max(self._latest_time, moment)
            return max(0.0, self._started + (self._latest_time - self._first_time) / self._speedup - now)
        return 0.0


def format_progress(read: int, total: int, replayed: int, elapsed_s: float) -> str:
    """``replay  1200/5000 records (24%)  1100 replayed  950 ev/s  eta 4s``."""
    share = f" ({100 * read // total}%)" if total else ""
    speed = replayed / elapsed_s if elapsed_s > 0 else 0.0
    pace = read / elapsed_s if elapsed_s > 0 else 0.0
    eta = f"  eta {max(0, total - read) / pace:.0f}s" if pace > 0 and total else ""
    return f"replay  {read}/{total} records{share}  {replayed} replayed  {speed:.0f} ev/s{eta}"


class Progress:
    """A progress line on ``stream``: rewritten in place on a terminal, one line every few seconds
    otherwise (logs, CI)."""

    def __init__(self, stream: TextIO | None, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._total = total
        self._clock = clock
        self._started = clock()
        self._shown_at = 0.0
        self._tty = bool(stream is not None and stream.isatty())
        self._interval = 0.2 if self._tty else 5.0

    def update(self, read: int, replayed: int, final: bool = False) -> None:
        if self._stream is None:
            return
        now = self._clock()
        if not final and now - self._shown_at < self._interval:
            return
        self._shown_at = now
        line = format_progress(read, self._total, replayed, now - self._started)
        if self._tty:
            self._stream.write("\r" + line + ("\n" if final else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()


# --- where the events go ----------------------------------------------------------------------


@dataclass(frozen=True)
class Selected:
    record: ConsumerRecord
    event: Event


class ReplaySink(Protocol):
    """Receives the selected events, in chunks, in each partition's order."""

    def write(self, batch: Sequence[Selected]) -> int:
        """Writes ``batch`` durably; returns how many were new to the target (the rest were there)."""
        ...

    def describe(self) -> str:
        """Where the events go, for the summary (e.g. ``namespace exp_hour``)."""
        ...


class DryRunSink:
    """Writes nothing; the replay counts what it would have written."""

    def write(self, batch: Sequence[Selected]) -> int:
        return len(batch)

    def describe(self) -> str:
        return "nowhere (dry run)"


class TopicSink:
    """Produces each record again, key, value and headers unchanged, and waits for Kafka's acks."""

    def __init__(self, producer: KafkaProducer, topic: str, ack_timeout_s: float = 60.0) -> None:
        self._producer = producer
        self._topic = topic
        self._ack_timeout_s = ack_timeout_s

    def write(self, batch: Sequence[Selected]) -> int:
        futures = []
        for selected in batch:
            record = selected.record
            source = f"{record.topic}/{record.partition}/{record.offset}".encode()
            headers = [*(record.headers or []), (REPLAY_SOURCE_HEADER, source)]
            futures.append(self._producer.send(self._topic, key=record.key, value=record.value, headers=headers))
        self._producer.flush(timeout=self._ack_timeout_s)
        for future in futures:
            future.get(timeout=self._ack_timeout_s)
        return len(batch)

    def describe(self) -> str:
        return f"topic {self._topic}"


class NamespaceSink:
    """Applies events to a namespace exactly as live ingestion does, at their source positions, so a
    second replay of the same records into the same namespace changes nothing."""

    def __init__(self, writer: FeatureWriter, namespace: str) -> None:
        self._writer = writer
        self._namespace = namespace

    def write(self, batch: Sequence[Selected]) -> int:
        result = self._writer.apply(
            [
                DeliveredEvent(s.record.topic, s.record.partition, s.record.offset, s.event, None, s.record.timestamp)
                for s in batch
            ]
        )
        return result.inserted

    def describe(self) -> str:
        return f"namespace {self._namespace}"


def prepare_namespace(
    postgres_url: str,
    redis_client: redis.Redis,
    source_namespace: str,
    namespace: str,
    catalog_ids: frozenset[str] = frozenset(),
) -> tuple[Engine, list[str]]:
    """Migrates ``namespace``, copies the catalogs (all, or ``catalog_ids``) from ``source_namespace``
    into it and mirrors them into its Redis prefix. Returns its engine and the catalogs copied.

    Rows already in ``namespace`` are kept (a namespace replayed into twice keeps its first copy).
    """
    for name in (source_namespace, namespace):
        if not NAMESPACE_PATTERN.fullmatch(name):  # both are spelled into SQL below
            raise ReplayError(f"namespace {name!r} must match {NAMESPACE_PATTERN.pattern}")
    upgrade_to_head(postgres_url, namespace)
    engine = make_engine(postgres_url, namespace)
    with engine.begin() as conn:
        source_ids = set(conn.execute(text(f'SELECT catalog_id FROM "{source_namespace}".catalogs')).scalars())
        copied = sorted(source_ids & catalog_ids if catalog_ids else source_ids)
        for table in CATALOG_TABLES:
            columns = ", ".join(f'"{c.name}"' for c in table.columns)
            conn.execute(
                text(
                    f'INSERT INTO "{namespace}".{table.name} ({columns}) '
                    f'SELECT {columns} FROM "{source_namespace}".{table.name} WHERE catalog_id = ANY(:ids) '
                    "ON CONFLICT DO NOTHING"
                ),
                {"ids": copied},
            )
        present = set(conn.execute(select(tables.catalogs.c.catalog_id)).scalars())
    mirror = CatalogWriter(engine, redis_client, namespace)
    for catalog_id in sorted(present & set(copied)):
        mirror.mirror_from_postgres(catalog_id)
    return engine, copied


# --- the replay -------------------------------------------------------------------------------


@dataclass
class ReplaySummary:
    """What a replay read and what became of each record."""

    source: str
    target: str
    read: int = 0
    outside_window: int = 0
    invalid: int = 0
    filtered: int = 0
    denied: int = 0
    replayed: int = 0
    new_to_target: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.replayed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "read": self.read,
            "outside_window": self.outside_window,
            "invalid": self.invalid,
            "filtered": self.filtered,
            "denied": self.denied,
            "replayed": self.replayed,
            "new_to_target": self.new_to_target,
            "by_type": dict(sorted(self.by_type.items())),
            "elapsed_s": round(self.elapsed_s, 3),
            "events_per_s": round(self.events_per_s, 1),
        }

    def lines(self) -> list[str]:
        verb = "would replay" if self.target.endswith("(dry run)") else "replayed"
        out = [
            f"read {self.read} records of {self.source} in {self.elapsed_s:.1f}s",
            f"  outside the Kafka time window: {self.outside_window}",
            f"  invalid (ingestion dead-letters them): {self.invalid}",
            f"  filtered out: {self.filtered}",
            f"  deny-listed (deleted users): {self.denied}",
            f"{verb} {self.replayed} events to {self.target} ({self.events_per_s:.0f} events/s)",
        ]
        if self.target.startswith("namespace"):
            out.append(f"  new to the namespace: {self.new_to_target} (the rest were there already)")
        out.extend(f"  {event_type:18} {count}" for event_type, count in sorted(self.by_type.items()))
        return out


def replay(
    consumer: KafkaConsumer,
    topic: str,
    options: ReplayOptions,
    sink: ReplaySink,
    denylist: DenyList,
    progress_stream: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ReplaySummary:
    """Reads the selected range of ``topic`` and hands the events that pass every filter to ``sink``.

    Per partition, events reach the sink in offset order. Raises :class:`ReplayError` when the
    topic or partitions do not exist or reading stalls; what was written before stays written.
    """
    started = time.monotonic()
    ranges = offset_ranges(consumer, topic, options.kafka_from, options.kafka_to, options.offsets)
    summary = ReplaySummary(source=_describe_ranges(topic, ranges), target=sink.describe())
    progress = Progress(progress_stream, sum(stop - start for start, stop in ranges.values()))
    pacer = Pacer(clock=clock) if options.dry_run else Pacer(options.rate, options.speedup, clock)
    window = (
        epoch_ms(options.kafka_from) if options.kafka_from else None,
        epoch_ms(options.kafka_to) if options.kafka_to else None,
    )
    batch: list[Selected] = []

    def flush() -> None:
        if batch:
            summary.new_to_target += sink.write(batch)
            summary.replayed += len(batch)
            summary.by_type.update(str(s.event.type) for s in batch)
            batch.clear()

    for records in read_ranges(consumer, ranges):
        for record in records:
            summary.read += 1
            if (window[0] is not None and record.timestamp < window[0]) or (
                window[1] is not None and record.timestamp >= window[1]
            ):
                summary.outside_window += 1
                continue
            try:
                event = parse_event(record.value or b"")
            except InvalidEvent:
                summary.invalid += 1
                continue
            if not options.event_filter.accepts(event):
                summary.filtered += 1
                continue
            if denylist.blocks(event.catalog_id, event.user_id, record.timestamp):
                summary.denied += 1
                continue
            wait_s = pacer.due_in(event.event_time)
            if wait_s > 0:
                flush()  # what is due goes out before the pause
                sleep(wait_s)
            batch.append(Selected(record, event))
            if len(batch) >= options.batch_size:
                flush()
        progress.update(summary.read, summary.replayed + len(batch))
    flush()
    summary.elapsed_s = time.monotonic() - started
    progress.update(summary.read, summary.replayed, final=True)
    return summary


def _describe_ranges(topic: str, ranges: Mapping[TopicPartition, tuple[int, int]]) -> str:
    parts = ", ".join(f"{tp.partition}:{start}-{stop}" for tp, (start, stop) in sorted(ranges.items()))
    return f"{topic} [{parts}]"


class ReplaySettings(PostgresSettings, RedisSettings, KafkaSettings):
    """The servers; ``namespace`` is the source namespace (deny-list, catalogs)."""


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        settings = load_settings(ReplaySettings)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging("replay", "WARNING")
    quiet_kafka_client()
    topic = options.topic or settings.events_topic
    source_namespace = options.source_namespace or settings.namespace
    if options.to_topic == topic:
        print("--to-topic is the topic being read; choose another", file=sys.stderr)
        return 2
    source_engine = make_engine(settings.postgres_url, source_namespace, pool_size=1)
    redis_client = redis.Redis.from_url(settings.redis_url)
    consumer = make_reader(settings.kafka_bootstrap, "bundlewise-replay")
    producer: KafkaProducer | None = None
    target_engine: Engine | None = None
    try:
        denylist = load_denylist(source_engine)
        sink: ReplaySink
        if options.to_topic is not None:
            partitions = consumer.partitions_for_topic(topic) or set()
            ensure_topics(settings.kafka_bootstrap, {options.to_topic: max(1, len(partitions))})
            producer = make_producer(settings.kafka_bootstrap, "bundlewise-replay", linger_ms=20)
            sink = TopicSink(producer, options.to_topic)
        elif options.namespace is not None:
            target_engine, copied = prepare_namespace(
                settings.postgres_url,
                redis_client,
                source_namespace,
                options.namespace,
                options.event_filter.catalog_ids,
            )
            log.info("copied catalogs %s from %s into %s", copied, source_namespace, options.namespace)
            sink = NamespaceSink(FeatureWriter(target_engine, redis_client, options.namespace), options.namespace)
        else:
            sink = DryRunSink()
        summary = replay(consumer, topic, options, sink, denylist, None if options.quiet else sys.stderr)
    except (ReplayError, DenyListUnavailable) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 1
    finally:
        consumer.close()
        if producer is not None:
            producer.close(timeout=10)
        if target_engine is not None:
            target_engine.dispose()
        source_engine.dispose()
        redis_client.close()
    if options.as_json:
        print(json.dumps(summary.as_dict()))
    else:
        print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
