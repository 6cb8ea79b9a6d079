"""Recomputes a namespace's Redis state from PostgreSQL, the source of truth.

Used after Redis is lost, or after a feature definition changed. The events are applied in the
order Kafka delivered them (topic, partition, offset) through the same code as live ingestion, so
the result equals what live ingestion built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from sqlalchemy import Engine, select

from shared.events import EVENT_ADAPTER
from shared.store import tables
from shared.store.catalog import CatalogWriter
from shared.store.feature_updates import DeliveredEvent, FeatureWriter
from shared.store.redis_keys import NamespaceKeys

log = logging.getLogger(__name__)

STREAM_CHUNK = 5000


@dataclass(frozen=True)
class RebuildReport:
    deleted_keys: int
    catalogs: int
    events: int


def drop_namespace_keys(redis_client: redis.Redis, namespace: str) -> int:
    """Deletes every Redis key of ``namespace``; returns how many."""
    deleted = 0
    batch: list[str] = []
    for key in redis_client.scan_iter(match=NamespaceKeys(namespace).pattern(), count=2000):
        batch.append(key)
        if len(batch) >= 2000:
            deleted += int(redis_client.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(redis_client.unlink(*batch))
    return deleted


def rebuild_redis(engine: Engine, redis_client: redis.Redis, namespace: str) -> RebuildReport:
    """Drops the namespace's keys, mirrors every catalog, then re-applies every event in Kafka order.

    Ingestion must be paused meanwhile, or it races the rebuild.
    """
    deleted = drop_namespace_keys(redis_client, namespace)
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
