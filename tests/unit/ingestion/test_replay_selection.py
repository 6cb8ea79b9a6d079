"""What a replay selects and how it paces, against an in-memory consumer: no Kafka needed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndTimestamp

from services.ingestion.replay import (
    EventFilter,
    Pacer,
    Selected,
    format_progress,
    parse_args,
    replay,
)
from shared.events import EVENT_ADAPTER, Event
from shared.kafka_replay import OffsetRange, ReplayError, offset_ranges
from shared.store.privacy import DenyList, user_digest

TOPIC = "t"
T0 = datetime(2014, 7, 22, tzinfo=UTC)


def event(n: int, kind: str = "view", user: str = "u1", minutes: int = 0, catalog: str = "amazon") -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": kind,
        "event_id": f"evt-{n:08d}",
        "catalog_id": catalog,
        "user_id": user,
        "event_time": (T0 + timedelta(minutes=minutes)).isoformat(),
    }
    if kind in {"view", "click", "add_to_cart", "purchase"}:
        body["item_id"] = f"i{n}"
    elif kind == "search":
        body["query"] = "tent"
    return body


def record(partition: int, offset: int, value: bytes, timestamp_ms: int) -> ConsumerRecord:
    return ConsumerRecord(TOPIC, partition, -1, offset, timestamp_ms, 0, b"k", value, [], None, 1, len(value), 0)


class FakeConsumer:
    """Partitions of records; answers the calls the replay makes, in memory."""

    def __init__(self, partitions: dict[int, list[tuple[dict[str, Any] | bytes, int]]], first: int = 0) -> None:
        self.records = {
            p: [
                record(p, first + i, raw if isinstance(raw, bytes) else json.dumps(raw).encode(), ts)
                for i, (raw, ts) in enumerate(items)
            ]
            for p, items in partitions.items()
        }
        self.first = first
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self.records) if topic == TOPIC else None

    def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, self.first)

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.first + len(self.records[tp.partition]) for tp in tps}

    def offsets_for_times(self, query: dict[TopicPartition, int]) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        found: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for tp, ts in query.items():
            match = next((r for r in self.records[tp.partition] if r.timestamp >= ts), None)
            found[tp] = None if match is None else OffsetAndTimestamp(match.offset, match.timestamp, -1)
        return found

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(tps, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[ConsumerRecord]]:
        polled = {}
        for tp, position in self.positions.items():
            if tp in self.paused:
                continue
            chunk = [r for r in self.records[tp.partition] if r.offset >= position][:2]
            if chunk:
                polled[tp] = chunk
                self.positions[tp] = chunk[-1].offset + 1
        return polled


class RecordingSink:
    def __init__(self) -> None:
        self.batches: list[list[Selected]] = []

    def write(self, batch: Sequence[Selected]) -> int:
        self.batches.append(list(batch))
        return len(batch)

    def describe(self) -> str:
        return "memory"

    @property
    def event_ids(self) -> list[str]:
        return [s.event.event_id for batch in self.batches for s in batch]


def tp(partition: int) -> TopicPartition:
    return TopicPartition(TOPIC, partition)


def test_the_whole_topic_is_read_up_to_the_end_offsets_captured_at_start() -> None:
    consumer = FakeConsumer({0: [(event(1), 10), (event(2), 20)], 1: [(event(3), 15)]}, first=5)

    assert offset_ranges(consumer, TOPIC) == {tp(0): (5, 7), tp(1): (5, 6)}


def test_a_kafka_time_window_becomes_offsets_from_offsets_for_times() -> None:
    consumer = FakeConsumer({0: [(event(1), 10), (event(2), 20), (event(3), 30)], 1: [(event(4), 5)]})

    ranges = offset_ranges(consumer, TOPIC, datetime.fromtimestamp(0.015, UTC), datetime.fromtimestamp(0.025, UTC))

    assert ranges == {tp(0): (1, 2), tp(1): (1, 1)}


def test_explicit_offsets_are_clamped_to_what_the_partition_holds() -> None:
    consumer = FakeConsumer({0: [(event(n), n) for n in range(5)], 1: [(event(9), 1)]}, first=2)

    ranges = offset_ranges(consumer, TOPIC, offsets=[OffsetRange(0, 0, 4), OffsetRange(1, 2, None)])

    assert ranges == {tp(0): (2, 4), tp(1): (2, 3)}


def test_an_unknown_topic_or_partition_is_refused() -> None:
    consumer = FakeConsumer({0: []})

    with pytest.raises(ReplayError, match="does not exist"):
        offset_ranges(consumer, "other")
    with pytest.raises(ReplayError, match=r"no partition \[3\]"):
        offset_ranges(consumer, TOPIC, offsets=[OffsetRange(3, 0)])


def test_the_filter_keeps_only_the_given_types_users_catalogs_and_event_times() -> None:
    kept = EventFilter(
        types=frozenset({"purchase"}),
        user_ids=frozenset({"u1"}),
        catalog_ids=frozenset({"amazon"}),
        event_time_from=T0 + timedelta(minutes=1),
        event_time_to=T0 + timedelta(minutes=2),
    )

    def parsed(body: dict[str, Any]) -> Event:
        return EVENT_ADAPTER.validate_python(body)

    assert kept.accepts(parsed(event(1, "purchase", minutes=1)))
    assert not kept.accepts(parsed(event(1, "view", minutes=1)))
    assert not kept.accepts(parsed(event(1, "purchase", user="u2", minutes=1)))
    assert not kept.accepts(parsed(event(1, "purchase", catalog="steam", minutes=1)))
    assert not kept.accepts(parsed(event(1, "purchase", minutes=0)))
    assert not kept.accepts(parsed(event(1, "purchase", minutes=2)))
    assert EventFilter().accepts(parsed(event(1, "search")))


def test_a_dry_run_counts_by_type_and_says_why_the_rest_was_left_out() -> None:
    consumer = FakeConsumer(
        {
            0: [(event(1, "view"), 10), (event(2, "purchase"), 20), (b"{not json", 30), (event(3, "view"), 40)],
            1: [(event(4, "search", user="gone"), 15), (event(5, "click", user="u2"), 25)],
        }
    )
    options = parse_args(["--dry-run", "--type", "view,purchase,search"])
    denylist = DenyList({("amazon", user_digest("gone")): 1_000})
    sink = RecordingSink()

    summary = replay(consumer, TOPIC, options, sink, denylist)

    assert summary.as_dict() | {"elapsed_s": 0, "events_per_s": 0} == {
        "source": "t [0:0-4, 1:0-2]",
        "target": "memory",
        "read": 6,
        "outside_window": 0,
        "invalid": 1,
        "filtered": 1,
        "denied": 1,
        "replayed": 3,
        "new_to_target": 3,
        "by_type": {"purchase": 1, "view": 2},
        "elapsed_s": 0,
        "events_per_s": 0,
    }
    assert sink.event_ids == ["evt-00000001", "evt-00000002", "evt-00000003"]


def test_records_outside_the_kafka_window_are_left_out_even_past_the_first_matching_offset() -> None:
    # CreateTime timestamps need not grow with offsets: offset 2 is older than the window's start.
    consumer = FakeConsumer({0: [(event(1), 10), (event(2), 20), (event(3), 12), (event(4), 40)]})
    options = parse_args(["--dry-run", "--from", "15", "--to", "40"])
    sink = RecordingSink()

    summary = replay(consumer, TOPIC, options, sink, DenyList())

    assert sink.event_ids == ["evt-00000002"]
    assert (summary.read, summary.outside_window) == (2, 1)


def test_a_deleted_users_events_are_left_out_up_to_the_end_of_the_erasure_only() -> None:
    denylist = DenyList({("amazon", user_digest("gone")): 1_000, ("amazon", user_digest("pending")): None})

    assert denylist.blocks("amazon", "gone", 999)
    assert denylist.blocks("amazon", "gone", 1_000)
    assert not denylist.blocks("amazon", "gone", 1_001)  # they came back afterwards: new data
    assert not denylist.blocks("steam", "gone", 10)
    assert denylist.blocks("amazon", "pending", 10**15)
    assert not denylist.blocks("amazon", "someone", 10)


def test_a_rate_spaces_events_evenly_from_the_first() -> None:
    now = [100.0]
    pacer = Pacer(rate=4, clock=lambda: now[0])

    waits = [pacer.due_in(T0) for _ in range(3)]

    assert waits == [0.0, 0.25, 0.5]
    now[0] = 101.0
    assert pacer.due_in(T0) == 0.0  # behind schedule: no wait


def test_a_speedup_divides_event_time_gaps_and_never_goes_back() -> None:
    now = [0.0]
    pacer = Pacer(speedup=60, clock=lambda: now[0])

    assert pacer.due_in(T0) == 0.0
    assert pacer.due_in(T0 + timedelta(minutes=2)) == 2.0
    now[0] = 2.0
    assert pacer.due_in(T0 + timedelta(minutes=1)) == 0.0  # an earlier event from another partition
    assert pacer.due_in(T0 + timedelta(minutes=3)) == 1.0


def test_a_paced_replay_writes_what_is_due_before_it_sleeps() -> None:
    consumer = FakeConsumer({0: [(event(n), n) for n in range(1, 4)]})
    options = parse_args(["--namespace", "replay_x", "--rate", "1000", "--batch-size", "100"])
    sink = RecordingSink()
    sleeps: list[float] = []

    replay(consumer, TOPIC, options, sink, DenyList(), sleep=sleeps.append, clock=lambda: 0.0)

    assert [len(b) for b in sink.batches] == [1, 1, 1]
    assert sleeps == [0.001, 0.002]


def test_the_progress_line_shows_share_speed_and_eta() -> None:
    assert format_progress(1200, 5000, 1100, 2.0) == "replay  1200/5000 records (24%)  1100 replayed  550 ev/s  eta 6s"
    assert format_progress(0, 0, 0, 0.0) == "replay  0/0 records  0 replayed  0 ev/s"
