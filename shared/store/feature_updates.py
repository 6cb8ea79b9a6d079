"""How an accepted event changes the store: a durable row in PostgreSQL, features in Redis.

Exactly once in effect, without distributed transactions (the argument is in
``docs/adr/0002-exactly-once-ingestion.md``):

1. All events of a batch go into PostgreSQL in one statement (one transaction) with
   ``ON CONFLICT DO NOTHING`` on the client-minted event id. The row keeps the Kafka position of the
   event's *first* delivery.
2. An event is applied to Redis only from that first position ("owned" deliveries): a duplicate
   produced again at a new offset finds another position in its row and is skipped.
3. Redis effects of a partition's run are applied by one Lua script that also advances the
   partition's watermark, atomically: a delivery at or below the watermark is skipped.

A crash after step 1 and before step 3 redelivers the same offsets: PostgreSQL already holds the
rows (nothing doubles) and they are still owned by those offsets, so step 3 applies them (nothing is
lost). A crash after step 3 but before the Kafka commit finds the watermark ahead and skips them.
Redis therefore always equals a replay of PostgreSQL's rows in Kafka order (see
:func:`shared.store.rebuild.rebuild_redis`).

Throughput: a batch costs one round trip to PostgreSQL (rows passed as one JSON document, users
and items created in the same statement) plus a second only when some events were already there,
and one Lua call per partition and ``LUA_CHUNK`` events.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import redis
from sqlalchemy import Engine

from shared.bandit_features import examination_prior
from shared.events import (
    BundleImpressionEvent,
    BundleOutcomeEvent,
    Event,
    EventType,
    ItemEvent,
    ReviewEvent,
    SearchEvent,
    encode_event,
)
from shared.store.redis_keys import (
    SESSION_ITEMS_CAP,
    USER_RECENT_ITEMS_CAP,
    CatalogKeys,
    NamespaceKeys,
)

log = logging.getLogger(__name__)

# How much one interaction says about interest in an item.
INTERACTION_WEIGHTS: dict[str, int] = {
    EventType.VIEW.value: 1,
    EventType.CLICK.value: 2,
    EventType.REVIEW.value: 2,
    EventType.ADD_TO_CART.value: 3,
    EventType.PURCHASE.value: 5,
}
BASKET_EVENTS = frozenset({EventType.ADD_TO_CART.value, EventType.PURCHASE.value})
BUNDLE_STAT_FIELD = {EventType.BUNDLE_CLICK.value: "clicks", EventType.BUNDLE_PURCHASE.value: "purchases"}

APPLY_SCRIPT = Path(__file__).with_name("apply_effects.lua").read_text()
# Events per Lua call: bounds how long one call holds Redis (which serves reads meanwhile).
LUA_CHUNK = 1000

# Step 1 as one statement: the batch arrives as one JSON array of rows (encoded by orjson, each
# payload embedded as it came from Kafka), which PostgreSQL expands with json_to_recordset: far
# cheaper on both sides than one bound parameter per value. Users and items seen for the first time
# are created (cold start); rows are inserted in key order, so that two consumers that insert the
# same ids never wait on each other in opposite orders. RETURNING names the deliveries that inserted
# their row: those are first deliveries, owned by construction.
_INSERT_BATCH = """
WITH batch AS (
    SELECT * FROM json_to_recordset(%(rows)s::json) AS b(
        c text, e text, t text, u text, s text, i text, b text, at timestamptz, p int, o bigint, ts bigint,
        payload jsonb)
), allowed AS (
    -- A deleted shopper's events written to Kafka up to the end of their erasure stay out (all of them
    -- while it is pending; a delivery of unknown write time counts as theirs): see shared.store.privacy.
    SELECT * FROM batch b WHERE NOT EXISTS (
        SELECT 1 FROM privacy_denylist d
        WHERE d.catalog_id = b.c AND d.user_digest = encode(sha256(convert_to(b.u, 'UTF8')), 'hex')
          AND (d.completed_at IS NULL OR b.ts IS NULL
               OR b.ts <= (extract(epoch FROM d.completed_at) * 1000)::bigint))
), new_users AS (
    INSERT INTO users (catalog_id, user_id)
    SELECT DISTINCT c, u FROM allowed ORDER BY 1, 2
    ON CONFLICT DO NOTHING
), new_items AS (
    INSERT INTO items (catalog_id, item_id, first_seen_in_event)
    SELECT DISTINCT c, i, true FROM allowed WHERE i IS NOT NULL ORDER BY 1, 2
    ON CONFLICT DO NOTHING
)
INSERT INTO events (catalog_id, event_id, event_type, user_id, session_id, item_id, bundle_id, event_time,
                    kafka_topic, kafka_partition, kafka_offset, payload)
SELECT c, e, t, u, s, i, b, at, %(topic)s, p, o, payload
FROM allowed ORDER BY c, e, p, o
ON CONFLICT DO NOTHING
RETURNING kafka_partition, kafka_offset
"""

# Step 2 for the events whose row was already there: a separate statement, so it sees rows that a
# concurrent transaction committed while step 1 waited for them.
_FIRST_POSITIONS = """
SELECT e.catalog_id, e.event_id, e.kafka_topic, e.kafka_partition, e.kafka_offset
FROM events e JOIN unnest(%(catalog_id)s::text[], %(event_id)s::text[]) AS b(catalog_id, event_id)
  ON e.catalog_id = b.catalog_id AND e.event_id = b.event_id
"""


class DeliveredEvent(NamedTuple):
    """A valid event with the Kafka position it was read from.

    ``payload`` is the event's JSON as read from Kafka, stored as is; None encodes ``event``
    (:func:`shared.events.encode_event`). Either way it must parse back to the same event.
    ``kafka_timestamp_ms`` is when the record was written to Kafka, which the privacy deny-list
    compares with the end of a shopper's erasure.
    """

    topic: str
    partition: int
    offset: int
    event: Event
    payload: bytes | None = None
    kafka_timestamp_ms: int | None = None


@dataclass(frozen=True)
class ApplyResult:
    inserted: int
    duplicates: int
    applied_to_redis: int


def redis_ops(event: Event, keys: CatalogKeys) -> list[list[Any]]:
    """The Redis effects of one event, as ops for apply_effects.lua. Pure: no I/O.

    Time features use the event time in UTC: ``ts`` in epoch seconds, the popularity day as
    ``YYYYMMDD``. A shopper's looks at a bundle (``hincrfloat``) are a float sum, so its string
    depends on the order of the shopper's impressions: offset order on the shopper's partition (the
    topic is keyed by ``catalog:user``), the order both live ingestion and a rebuild apply them in.
    """
    utc = event.event_time.astimezone(UTC)  # a datetime.timezone: faster arithmetic than pydantic's TzInfo
    ts = int(utc.timestamp())
    ops: list[list[Any]] = []
    if isinstance(event, ItemEvent | ReviewEvent):
        weight = INTERACTION_WEIGHTS[event.type]
        item = event.item_id
        day = f"{utc.year:04d}{utc.month:02d}{utc.day:02d}"
        ops.append(["recent", keys.user_recent_items(event.user_id), item, ts, USER_RECENT_ITEMS_CAP])
        ops.append(["zincr", keys.item_popularity(), weight, item])
        ops.append(["zincr", keys.item_popularity_day(day), weight, item])
        ops.append(["affinity", keys.item(item), keys.user_categories(event.user_id), weight])
        if event.type in BASKET_EVENTS and event.session_id is not None:
            ops.append(
                [
                    "basket",
                    keys.session_items(event.session_id),
                    item,
                    ts,
                    keys.item_neighbours(""),
                    SESSION_ITEMS_CAP,
                ]
            )
    elif isinstance(event, BundleImpressionEvent):
        ops.extend(["hincr", keys.bundle_stats(shown.bundle_id), "impressions", 1] for shown in event.bundles)
        looks = keys.user_bundle_looks(event.user_id)
        ops.extend(["hincrfloat", looks, shown.bundle_id, _looks_increment(shown.position)] for shown in event.bundles)
    elif isinstance(event, BundleOutcomeEvent):
        ops.append(["hincr", keys.bundle_stats(event.bundle_id), BUNDLE_STAT_FIELD[event.type], 1])
        if event.type == EventType.BUNDLE_PURCHASE.value:
            ops.append(["zincr", keys.bundle_popularity(), 1, event.bundle_id])
            ops.append(["sadd", keys.user_bundles(event.user_id), event.bundle_id])
        elif event.type == EventType.BUNDLE_CLICK.value:
            ops.append(["sadd", keys.user_bundle_clicks(event.user_id), event.bundle_id])
    elif isinstance(event, SearchEvent):
        pass  # kept in PostgreSQL for search analytics; no online feature yet
    return ops


class FeatureWriter:
    """Applies batches of delivered events to PostgreSQL and Redis (see the module docstring)."""

    def __init__(self, engine: Engine, redis_client: redis.Redis, namespace: str) -> None:
        self._engine = engine
        self._redis = redis_client
        self._keys = NamespaceKeys(namespace)
        self._catalog_keys: dict[str, CatalogKeys] = {}
        self._apply = redis_client.register_script(APPLY_SCRIPT)

    def apply(self, batch: Sequence[DeliveredEvent]) -> ApplyResult:
        """Makes ``batch`` durable in PostgreSQL, then applies the owned deliveries to Redis.

        Raises:
            sqlalchemy.exc.OperationalError, redis.ConnectionError: on a transient failure; nothing
            was committed to Kafka, so the caller retries the same batch.
        """
        if not batch:
            return ApplyResult(0, 0, 0)
        owned, inserted = self.write_postgres(batch)
        applied = self.apply_to_redis(owned)
        return ApplyResult(inserted=inserted, duplicates=len(batch) - len(owned), applied_to_redis=applied)

    def write_postgres(self, batch: Sequence[DeliveredEvent]) -> tuple[list[DeliveredEvent], int]:
        """Step 1 and 2: makes ``batch`` durable in one transaction.

        Returns the owned deliveries (in no particular order), to be passed to :meth:`apply_to_redis`
        once this returned, and how many rows were new.

        Raises:
            sqlalchemy.exc.OperationalError: PostgreSQL unavailable; nothing or all was committed.
        """
        if not batch:
            return [], 0
        by_topic: dict[str, list[DeliveredEvent]] = defaultdict(list)
        for delivered in batch:
            by_topic[delivered.topic].append(delivered)
        owned: list[DeliveredEvent] = []
        inserted = 0
        with self._engine.begin() as conn:
            for topic, deliveries in by_topic.items():
                result = conn.exec_driver_sql(_INSERT_BATCH, _columns(topic, deliveries))
                new_positions = {(partition, offset) for partition, offset in result}
                inserted += len(new_positions)
                for delivered in deliveries:
                    if (delivered.partition, delivered.offset) in new_positions:
                        owned.append(delivered)
        if inserted < len(batch):
            owned.extend(self._owned_redeliveries(batch, owned))
        return owned, inserted

    def _owned_redeliveries(
        self, batch: Sequence[DeliveredEvent], inserted: list[DeliveredEvent]
    ) -> list[DeliveredEvent]:
        """The deliveries whose row was already there and records this very position: a redelivery
        after a crash between the PostgreSQL commit and the Redis update (the watermark decides)."""
        new = {(d.topic, d.partition, d.offset) for d in inserted}
        rest = [d for d in batch if (d.topic, d.partition, d.offset) not in new]
        ids = {(d.event.catalog_id, d.event.event_id) for d in rest}
        with self._engine.connect() as conn:
            rows = conn.exec_driver_sql(
                _FIRST_POSITIONS,
                {"catalog_id": [c for c, _ in ids], "event_id": [e for _, e in ids]},
            )
            first = {(c, e): (t, p, o) for c, e, t, p, o in rows}
        return [
            d for d in rest if first.get((d.event.catalog_id, d.event.event_id)) == (d.topic, d.partition, d.offset)
        ]

    def apply_to_redis(self, owned: Iterable[DeliveredEvent]) -> int:
        """Step 3: applies deliveries known to be first deliveries; returns how many were new to Redis.

        The watermark skips any delivery seen before. Runs of one partition must be applied in offset
        order across calls (a later run first would move the watermark past an earlier one).

        Raises:
            redis.ConnectionError, redis.TimeoutError: Redis unavailable; a retry applies the rest once.
        """
        by_partition: dict[tuple[str, int], list[DeliveredEvent]] = defaultdict(list)
        for delivered in owned:
            by_partition[(delivered.topic, delivered.partition)].append(delivered)
        applied = 0
        for (topic, partition), run in by_partition.items():
            run.sort(key=_offset)
            watermark = self._keys.watermark(topic, partition)
            for start in range(0, len(run), LUA_CHUNK):
                payload = orjson.dumps(
                    [
                        {"o": d.offset, "ops": redis_ops(d.event, self._catalog(d.event.catalog_id))}
                        for d in run[start : start + LUA_CHUNK]
                    ]
                )
                applied += int(self._apply(keys=[watermark], args=[payload]))
        return applied

    def _catalog(self, catalog_id: str) -> CatalogKeys:
        keys = self._catalog_keys.get(catalog_id)
        if keys is None:
            keys = self._catalog_keys[catalog_id] = self._keys.catalog(catalog_id)
        return keys


def _looks_increment(position: int) -> str:
    """``examination_prior(position)`` as the shortest decimal that reads back as the same float.

    Sent as a string, so that what HINCRBYFLOAT adds does not depend on how a Redis version prints
    a Lua number (7.0 writes 1/3 as 0.33333333333333331, later ones as 0.3333333333333333): a
    rebuild on an upgraded Redis gives the same strings as the live store.
    """
    return repr(examination_prior(position))


def _offset(delivered: DeliveredEvent) -> int:
    return delivered.offset


def _columns(topic: str, deliveries: Sequence[DeliveredEvent]) -> dict[str, Any]:
    """The parameters of ``_INSERT_BATCH``."""
    rows = []
    for delivered in deliveries:
        event = delivered.event
        raw = delivered.payload if delivered.payload is not None else encode_event(event)
        rows.append(
            {
                "c": event.catalog_id,
                "e": event.event_id,
                "t": event.type,
                "u": event.user_id,
                "s": event.session_id,
                "i": getattr(event, "item_id", None),
                "b": getattr(event, "bundle_id", None),
                "at": event.event_time,
                "p": delivered.partition,
                "o": delivered.offset,
                "ts": delivered.kafka_timestamp_ms,
                "payload": orjson.Fragment(raw),
            }
        )
    return {"topic": topic, "rows": orjson.dumps(rows).decode()}
