"""``bundlewise redrive``: sends dead-lettered events back to the events topic once they are fixed.

Ingestion dead-letters what can never apply, with the reason in a header. After the cause is fixed
(a validator too strict, a schema change, a producer bug whose events the schema now accepts), this
reads the whole dead-letter topic up to its end when the command starts, keeps the records whose
reason contains ``--reason`` (all by default), validates each again, and produces the ones that now
validate to the events topic with their original key. The others are reported with their current
reason and left where they are. ``--dry-run`` lists the dead-letter reasons, grouped, and how many of
each would now go through.

Running it twice is safe: ingestion deduplicates by event id, so an event re-driven twice counts
once. Events of users deleted on request (the deny-list) are not re-driven.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from shared.events import InvalidEvent, parse_event, partition_key
from shared.kafka import DEADLETTER_REASON_HEADER, make_producer
from shared.kafka_replay import ReplayError, make_reader, offset_ranges, quiet_kafka_client, read_ranges
from shared.log import configure_logging
from shared.settings import KafkaSettings, PostgresSettings, SettingsError, load_settings
from shared.store.migrate import make_engine
from shared.store.privacy import DenyList, DenyListUnavailable, load_denylist

REDRIVE_SOURCE_HEADER = "bundlewise-redrive-source"
UNKNOWN_REASON = "(no reason header)"
SHOWN_REASONS = 20


@dataclass
class RedriveSummary:
    """What a redrive found on the dead-letter topic, by dead-letter reason, and what it sent."""

    read: int = 0
    matched: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    now_valid_by_reason: Counter[str] = field(default_factory=Counter)
    still_invalid: Counter[str] = field(default_factory=Counter)
    denied: int = 0
    redriven: int = 0
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "matched": self.matched,
            "reasons": dict(self.reasons.most_common()),
            "now_valid_by_reason": dict(self.now_valid_by_reason.most_common()),
            "still_invalid": dict(self.still_invalid.most_common()),
            "denied": self.denied,
            "redriven": self.redriven,
            "elapsed_s": round(self.elapsed_s, 3),
        }

    def lines(self, dry_run: bool) -> list[str]:
        out = [f"read {self.read} dead-lettered records; {self.matched} match the reason filter"]
        out.append("dead-letter reasons (count, now valid):")
        for reason, count in self.reasons.most_common(SHOWN_REASONS):
            out.append(f"  {count:6} {self.now_valid_by_reason[reason]:6}  {reason}")
        if len(self.reasons) > SHOWN_REASONS:
            out.append(f"  ... and {len(self.reasons) - SHOWN_REASONS} more reasons")
        if self.still_invalid:
            out.append("still invalid, left on the dead-letter topic (count, reason now):")
            out.extend(f"  {count:6}  {reason}" for reason, count in self.still_invalid.most_common(SHOWN_REASONS))
        if self.denied:
            out.append(f"deny-listed (deleted users), not re-driven: {self.denied}")
        verb = "would re-drive" if dry_run else "re-drove"
        out.append(f"{verb} {self.redriven} events")
        return out


def redrive(
    consumer: KafkaConsumer,
    deadletter_topic: str,
    events_topic: str,
    producer: KafkaProducer | None,
    denylist: DenyList,
    reason_contains: str = "",
    ack_timeout_s: float = 60.0,
) -> RedriveSummary:
    """Re-produces to ``events_topic`` the dead-lettered records that now validate (none when
    ``producer`` is None: a dry run) and returns what it found.

    Raises:
        ReplayError: the dead-letter topic does not exist, or reading it stalled.
        kafka.errors.KafkaError: a re-driven event was not acknowledged.
    """
    started = time.monotonic()
    summary = RedriveSummary()
    needle = reason_contains.casefold()
    futures = []
    for records in read_ranges(consumer, offset_ranges(consumer, deadletter_topic)):
        for record in records:
            summary.read += 1
            headers = dict(record.headers or [])
            raw_reason = headers.get(DEADLETTER_REASON_HEADER)
            reason = raw_reason.decode(errors="replace") if raw_reason else UNKNOWN_REASON
            if needle not in reason.casefold():
                continue
            summary.matched += 1
            summary.reasons[reason] += 1
            try:
                event = parse_event(record.value or b"")
            except InvalidEvent as exc:
                summary.still_invalid[exc.reason] += 1
                continue
            summary.now_valid_by_reason[reason] += 1
            if denylist.blocks(event.catalog_id, event.user_id, record.timestamp):
                summary.denied += 1
                continue
            summary.redriven += 1
            if producer is not None:
                source = f"{record.topic}/{record.partition}/{record.offset}".encode()
                futures.append(
                    producer.send(
                        events_topic,
                        key=record.key or partition_key(event),
                        value=record.value,
                        headers=[(REDRIVE_SOURCE_HEADER, source)],
                    )
                )
    if producer is not None:
        producer.flush(timeout=ack_timeout_s)
        for future in futures:
            future.get(timeout=ack_timeout_s)
    summary.elapsed_s = time.monotonic() - started
    return summary


class RedriveSettings(PostgresSettings, KafkaSettings):
    """The servers and topics; ``namespace`` is whose deny-list applies."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bundlewise redrive",
        description="Re-produces dead-lettered events that now validate to the events topic (see docs/replay.md).",
    )
    parser.add_argument("--reason", default="", help="only records whose dead-letter reason contains this (any case)")
    parser.add_argument("--dry-run", action="store_true", help="list the reasons, grouped; send nothing")
    parser.add_argument("--deadletter-topic", help="default: $BUNDLEWISE_DEADLETTER_TOPIC")
    parser.add_argument("--events-topic", help="where to send them; default: $BUNDLEWISE_EVENTS_TOPIC")
    parser.add_argument("--json", dest="as_json", action="store_true", help="print the summary as one JSON object")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(RedriveSettings)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging("redrive", "WARNING")
    quiet_kafka_client()
    deadletter_topic = args.deadletter_topic or settings.deadletter_topic
    events_topic = args.events_topic or settings.events_topic
    engine = make_engine(settings.postgres_url, settings.namespace, pool_size=1)
    consumer = make_reader(settings.kafka_bootstrap, "bundlewise-redrive")
    producer = None if args.dry_run else make_producer(settings.kafka_bootstrap, "bundlewise-redrive", linger_ms=20)
    try:
        summary = redrive(consumer, deadletter_topic, events_topic, producer, load_denylist(engine), args.reason)
    except (ReplayError, DenyListUnavailable) as exc:
        print(f"redrive: {exc}", file=sys.stderr)
        return 1
    finally:
        consumer.close()
        if producer is not None:
            producer.close(timeout=10)
        engine.dispose()
    print(json.dumps(summary.as_dict()) if args.as_json else "\n".join(summary.lines(args.dry_run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
