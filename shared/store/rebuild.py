"""Recomputes a namespace's Redis state from PostgreSQL, the source of truth.

Used after Redis is lost, or after a feature definition changed. The events are applied in the
order Kafka delivered them (topic, partition, offset) through the same code as live ingestion, so
the result equals what live ingestion built. Equal to the byte for features that depend on order,
such as a shopper's looks at bundles (a float sum): live ingestion, held by each partition's
watermark, applies a partition's events in offset order too, and one shopper's events are all on one
partition (the topic is keyed by ``catalog:user``), so each shopper's events come in the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import Engine, select

from shared.events import EVENT_ADAPTER
from shared.store import tables
from shared.store.catalog import CatalogWriter
from shared.store.feature_updates import DeliveredEvent, FeatureWriter
from shared.store.redis_keys import NamespaceKeys, made_by_backfill

log = logging.getLogger(__name__)

STREAM_CHUNK = 5000


@dataclass(frozen=True)
class RebuildReport:
    deleted_keys: int
    catalogs: int
    events: int


def drop_namespace_keys(
    redis_client: redis.Redis, namespace: str, keep: Callable[[str | bytes], bool] | None = None
) -> int:
    """Deletes every Redis key of ``namespace`` but those ``keep`` holds on to; returns how many."""
    deleted = 0
    batch: list[str] = []
    for key in redis_client.scan_iter(match=NamespaceKeys(namespace).pattern(), count=2000):
        if keep is not None and keep(key):
            continue
        batch.append(key)
        if len(batch) >= 2000:
            deleted += int(redis_client.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(redis_client.unlink(*batch))
    return deleted


def dump_namespace(redis_client: redis.Redis, namespace: str, chunk: int = 2000) -> dict[Any, Any]:
    """Every key of ``namespace`` with its whole value, keyed as the client returns keys, for
    comparing two states of the store (a rebuild with the original, say).

    The catalog version token is left out: it is fresh after every catalog write, so two mirrors of
    the same catalog never share it. Watermarks are kept (they are positions, not features; drop
    keys holding ``:wm:`` to compare features alone).
    """
    keys = sorted(
        key
        for key in redis_client.scan_iter(match=NamespaceKeys(namespace).pattern(), count=5000)
        if not _text(key).endswith(":catalog_version")
    )
    dumped: dict[Any, Any] = {}
    for start in range(0, len(keys), chunk):
        batch = keys[start : start + chunk]
        kinds_pipe = redis_client.pipeline(transaction=False)
        for key in batch:
            kinds_pipe.type(key)
        values = redis_client.pipeline(transaction=False)
        for key, raw_kind in zip(batch, kinds_pipe.execute(), strict=True):
            kind = _text(raw_kind)
            if kind == "zset":
                values.zrange(key, 0, -1, withscores=True)
            elif kind == "hash":
                values.hgetall(key)
            elif kind == "set":
                values.smembers(key)
            else:
                values.get(key)
        dumped.update(zip(batch, values.execute(), strict=True))
    return dumped


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def rebuild_redis(engine: Engine, redis_client: redis.Redis, namespace: str) -> RebuildReport:
    """Drops the namespace's keys, mirrors every catalog, then re-applies every event in Kafka order.

    The backfill's bundle and item vectors are kept (they come from encoders, not from PostgreSQL; after a
    Redis loss, rerun ``bundlewise backfill-vectors``). Ingestion must be paused meanwhile, or it
    races the rebuild.
    """
    deleted = drop_namespace_keys(redis_client, namespace, keep=made_by_backfill)
    catalogs = CatalogWriter(engine, redis_client, namespace)
    with engine.connect() as conn:
        catalog_ids = list(conn.execute(select(tables.catalogs.c.catalog_id)).scalars())
    for catalog_id in catalog_ids:
        catalogs.mirror_from_postgres(catalog_id)
    writer = FeatureWriter(engine, redis_client, namespace)
    applied = 0
    e = tables.events.c
    query = select(e.kafka_topic, e.kafka_partition, e.kafka_offset, e.payload).order_by(
        e.kafka_topic, e.kafka_partition, e.kafka_offset
    )
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=STREAM_CHUNK).execute(query)
        for rows in result.partitions():
            batch = [
                DeliveredEvent(topic, partition, offset, EVENT_ADAPTER.validate_python(payload))
                for topic, partition, offset, payload in rows
            ]
            writer.apply_to_redis(batch)
            applied += len(batch)
    log.info(
        "rebuilt namespace %s: %d keys dropped, %d catalogs, %d events",
        namespace,
        deleted,
        len(catalog_ids),
        applied,
    )
    return RebuildReport(deleted_keys=deleted, catalogs=len(catalog_ids), events=applied)
