"""How an accepted event changes the store: a durable row in PostgreSQL, features in Redis.

Exactly once in effect, without distributed transactions:

1. All events of a batch go into PostgreSQL in one transaction with ``ON CONFLICT DO NOTHING``
   on the client-minted event id. The row keeps the Kafka position of the event's *first* delivery.
2. An event is applied to Redis only from that first position ("owned" deliveries): a duplicate
   produced again at a new offset finds another position in its row and is skipped.
3. Redis effects of a partition's run are applied by one Lua script that also advances the
   partition's watermark, atomically: a delivery at or below the watermark is skipped.

A crash after step 1 and before step 3 redelivers the same offsets: PostgreSQL already holds the
rows (nothing doubles) and they are still owned by those offsets, so step 3 applies them (nothing is
lost). A crash after step 3 but before the Kafka commit finds the watermark ahead and skips them.
Redis therefore always equals a replay of PostgreSQL's rows in Kafka order (see :func:`rebuild`).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, select, tuple_
from sqlalchemy.dialects.postgresql import insert

from shared.events import (
    BundleImpressionEvent,
    BundleOutcomeEvent,
    Event,
    EventType,
    ItemEvent,
    ReviewEvent,
    SearchEvent,
)
from shared.store import tables
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


@dataclass(frozen=True)
class DeliveredEvent:
    """A valid event with the Kafka position it was read from."""

    topic: str
    partition: int
    offset: int
    event: Event


@dataclass(frozen=True)
class ApplyResult:
    inserted: int
    duplicates: int
    applied_to_redis: int


def redis_ops(event: Event, keys: CatalogKeys) -> list[list[Any]]:
    """The Redis effects of one event, as ops for apply_effects.lua. Pure: no I/O."""
    ts = int(event.event_time.timestamp())
    ops: list[list[Any]] = []
    if isinstance(event, ItemEvent | ReviewEvent):
        weight = INTERACTION_WEIGHTS[event.type]
        item = event.item_id
        day = event.event_time.strftime("%Y%m%d")
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
    elif isinstance(event, BundleOutcomeEvent):
        ops.append(["hincr", keys.bundle_stats(event.bundle_id), BUNDLE_STAT_FIELD[event.type], 1])
        if event.type == EventType.BUNDLE_PURCHASE.value:
            ops.append(["zincr", keys.bundle_popularity(), 1, event.bundle_id])
            ops.append(["sadd", keys.user_bundles(event.user_id), event.bundle_id])
    elif isinstance(event, SearchEvent):
        pass  # kept in PostgreSQL for search analytics; no online feature yet
    return ops


def _event_row(delivered: DeliveredEvent) -> dict[str, Any]:
    event = delivered.event
    return {
        "catalog_id": event.catalog_id,
        "event_id": event.event_id,
        "event_type": str(event.type),
        "user_id": event.user_id,
        "session_id": event.session_id,
        "item_id": getattr(event, "item_id", None),
        "bundle_id": getattr(event, "bundle_id", None),
        "event_time": event.event_time,
        "kafka_topic": delivered.topic,
        "kafka_partition": delivered.partition,
        "kafka_offset": delivered.offset,
        "payload": json.loads(event.model_dump_json(exclude_none=True)),
    }


class FeatureWriter:
    """Applies batches of delivered events to PostgreSQL and Redis (see the module docstring)."""

    def __init__(self, engine: Engine, redis_client: redis.Redis, namespace: str) -> None:
        self._engine = engine
        self._redis = redis_client
        self._keys = NamespaceKeys(namespace)
        self._apply = redis_client.register_script(APPLY_SCRIPT)

    def apply(self, batch: Sequence[DeliveredEvent]) -> ApplyResult:
        """Makes ``batch`` durable in PostgreSQL, then applies the owned deliveries to Redis.

        Raises:
            sqlalchemy.exc.OperationalError, redis.ConnectionError: on a transient failure; nothing
            was committed to Kafka, so the caller retries the same batch.
        """
        if not batch:
            return ApplyResult(0, 0, 0)
        owned, inserted = self._write_postgres(batch)
        applied = self.apply_to_redis(owned)
        return ApplyResult(inserted=inserted, duplicates=len(batch) - len(owned), applied_to_redis=applied)

    def _write_postgres(self, batch: Sequence[DeliveredEvent]) -> tuple[list[DeliveredEvent], int]:
        rows = [_event_row(d) for d in batch]
        users = {(r["catalog_id"], r["user_id"]) for r in rows}
        items = {(r["catalog_id"], r["item_id"]) for r in rows if r["item_id"] is not None}
        with self._engine.begin() as conn:
            # Users and items first seen in an event are created on the spot (cold start).
            conn.execute(
                insert(tables.users).on_conflict_do_nothing(),
                [{"catalog_id": c, "user_id": u} for c, u in sorted(users)],
            )
            if items:
                conn.execute(
                    insert(tables.items).on_conflict_do_nothing(),
                    [{"catalog_id": c, "item_id": i, "first_seen_in_event": True} for c, i in sorted(items)],
                )
            inserted = len(
                conn.execute(
                    insert(tables.events).on_conflict_do_nothing().returning(tables.events.c.event_id), rows
                ).all()
            )
            first_positions = conn.execute(
                select(
                    tables.events.c.catalog_id,
                    tables.events.c.event_id,
                    tables.events.c.kafka_topic,
                    tables.events.c.kafka_partition,
                    tables.events.c.kafka_offset,
                ).where(
                    tuple_(tables.events.c.catalog_id, tables.events.c.event_id).in_(
                        list({(r["catalog_id"], r["event_id"]) for r in rows})
                    )
                )
            ).all()
        first = {(c, e): (t, p, o) for c, e, t, p, o in first_positions}
        owned = [
            d for d in batch if first.get((d.event.catalog_id, d.event.event_id)) == (d.topic, d.partition, d.offset)
        ]
        return owned, inserted

    def apply_to_redis(self, owned: Iterable[DeliveredEvent]) -> int:
        """Applies deliveries known to be first deliveries; the watermark skips any seen before."""
        by_partition: dict[tuple[str, int], list[DeliveredEvent]] = defaultdict(list)
        for delivered in owned:
            by_partition[(delivered.topic, delivered.partition)].append(delivered)
        applied = 0
        for (topic, partition), run in by_partition.items():
            run.sort(key=lambda d: d.offset)
            payload = [{"o": d.offset, "ops": redis_ops(d.event, self._keys.catalog(d.event.catalog_id))} for d in run]
            applied += int(self._apply(keys=[self._keys.watermark(topic, partition)], args=[json.dumps(payload)]))
        return applied
