"""One fault test's pipeline on the private servers: a namespace with the small test catalog, its
own topics, the real service processes it asks for, and the probes the assertions need."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import redis
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from sqlalchemy import Engine, create_engine, func, select, text

from scripts.local_stack import LocalStack
from shared.events import EVENT_ADAPTER
from shared.kafka import ensure_topics, make_producer, send_events
from shared.store import tables
from shared.store.feature_updates import BUNDLE_STAT_FIELD, INTERACTION_WEIGHTS
from shared.store.migrate import make_engine, upgrade_to_head
from shared.store.rebuild import drop_namespace_keys, dump_namespace, rebuild_redis
from shared.store.redis_keys import NamespaceKeys
from tests.integration.faults.private_stack import PARTITIONS, PrivateServers
from tests.integration.isolated_pipeline import CATALOG, load_small_catalog
from tests.integration.waiting import wait_for

USERS = tuple(f"shopper-{n}" for n in range(6))
START = datetime(2014, 7, 22, 9, 0, tzinfo=UTC)


@dataclass
class FaultPipeline:
    servers: PrivateServers
    namespace: str
    topic: str
    deadletter_topic: str
    engine: Engine
    redis: redis.Redis
    stack: LocalStack

    def env(self) -> dict[str, str]:
        return {
            "BUNDLEWISE_POSTGRES_URL": self.servers.postgres_url,
            "BUNDLEWISE_REDIS_URL": self.servers.redis_url,
            "BUNDLEWISE_KAFKA_BOOTSTRAP": self.servers.kafka_bootstrap,
            "BUNDLEWISE_NAMESPACE": self.namespace,
            "BUNDLEWISE_EVENTS_TOPIC": self.topic,
            "BUNDLEWISE_DEADLETTER_TOPIC": self.deadletter_topic,
            "BUNDLEWISE_EVENTS_PARTITIONS": str(PARTITIONS),
            # Backoff capped low, so that a test sees recovery within a second of a server's return.
            "BUNDLEWISE_RETRY_MAX_BACKOFF_S": "1",
            "BUNDLEWISE_KAFKA_ACK_TIMEOUT_S": "2",
        }

    # --- acting -----------------------------------------------------------------------------------
    def produce(self, events: Sequence[dict[str, Any]]) -> None:
        """Straight to Kafka, as another producer than the gateway would."""
        producer = make_producer(self.servers.kafka_bootstrap, "it-faults")
        try:
            send_events(producer, self.topic, [EVENT_ADAPTER.validate_python(e) for e in events])
        finally:
            producer.close()

    # --- observing --------------------------------------------------------------------------------
    def stored_ids(self) -> Counter[str]:
        """How many rows PostgreSQL holds per event id (the namespace's whole events table)."""
        with self.engine.connect() as conn:
            return Counter(conn.execute(select(tables.events.c.event_id)).scalars())

    def stored_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(tables.events)).scalar_one())

    def applied_offsets(self) -> list[int]:
        """Each partition's watermark: the highest offset whose effects Redis holds (-1: none)."""
        keys = NamespaceKeys(self.namespace)
        values = self.redis.mget([keys.watermark(self.topic, p) for p in range(PARTITIONS)])
        return [-1 if v is None else int(v) for v in values]

    def end_offsets(self, topic: str | None = None) -> list[int]:
        consumer = KafkaConsumer(bootstrap_servers=self.servers.kafka_bootstrap)
        try:
            partitions = [TopicPartition(topic or self.topic, p) for p in range(PARTITIONS if topic is None else 1)]
            ends = consumer.end_offsets(partitions)
            return [ends[p] for p in partitions]
        finally:
            consumer.close()

    def committed_offsets(self) -> list[int]:
        """The ingestion group's committed offset per partition (0: none): everything before it is
        in PostgreSQL and Redis, since ingestion commits only after both."""
        group = f"bundlewise-ingestion-{self.namespace}"
        admin = KafkaAdminClient(bootstrap_servers=self.servers.kafka_bootstrap)
        try:
            committed = admin.list_group_offsets({group: None})[group]
        finally:
            admin.close()
        by_partition = {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == self.topic}
        return [by_partition.get(p, 0) for p in range(PARTITIONS)]

    def wait_until_all_applied(self, timeout_s: float = 60.0) -> None:
        """Until ingestion has committed every offset of the topic (so applied all it holds)."""
        ends = self.end_offsets()
        wait_for(self.committed_offsets, lambda c: c == ends, timeout_s, f"ingestion to commit offsets {ends}")

    def features(self) -> dict[str, object]:
        """Every Redis key of the namespace with its whole value (watermarks included)."""
        return dump_namespace(self.redis, self.namespace)

    def rebuilt_features(self) -> dict[str, object]:
        """What a rebuild from PostgreSQL makes of Redis (ingestion must not be writing)."""
        rebuild_redis(self.engine, self.redis, self.namespace)
        return self.features()

    def counters(self) -> dict[str, dict[str, float]]:
        """Item popularity and bundle statistics: the counters a doubled or lost event would change."""
        keys = NamespaceKeys(self.namespace).catalog(CATALOG)
        scores = cast(list[tuple[str, float]], self.redis.zrange(keys.item_popularity(), 0, -1, withscores=True))
        popularity = dict(scores)
        bundles = {}
        for bundle in ("b1", "b2", "b3"):
            stats = cast(dict[str, str], self.redis.hgetall(keys.bundle_stats(bundle)))
            bundles.update({f"{bundle}:{field}": float(value) for field, value in stats.items()})
        return {"item_popularity": popularity, "bundle_stats": bundles}


def expected_counters(events: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """:meth:`FaultPipeline.counters` when every event of ``events`` counted exactly once."""
    popularity: Counter[str] = Counter()
    bundles: Counter[str] = Counter()
    for event in {e["event_id"]: e for e in events}.values():
        if event["type"] in INTERACTION_WEIGHTS:
            popularity[event["item_id"]] += INTERACTION_WEIGHTS[event["type"]]
        elif event["type"] == "bundle_impression":
            for shown in event["bundles"]:
                bundles[f"{shown['bundle_id']}:impressions"] += 1
        elif event["type"] in BUNDLE_STAT_FIELD:
            bundles[f"{event['bundle_id']}:{BUNDLE_STAT_FIELD[event['type']]}"] += 1
    return {
        "item_popularity": {k: float(v) for k, v in popularity.items()},
        "bundle_stats": {k: float(v) for k, v in bundles.items()},
    }


@contextmanager
def fault_pipeline(
    servers: PrivateServers, purpose: str, log_dir: Path, services: tuple[str, ...] = ("ingestion",)
) -> Iterator[FaultPipeline]:
    """A migrated namespace with the small catalog, fresh topics and ``services`` running; removed after."""
    run_id = uuid.uuid4().hex[:8]
    namespace = f"{purpose}_{run_id}"
    topic, deadletter = f"it-{purpose}-{run_id}.events.v1", f"it-{purpose}-{run_id}.deadletter.v1"
    ensure_topics(servers.kafka_bootstrap, {topic: PARTITIONS, deadletter: 1})
    upgrade_to_head(servers.postgres_url, namespace)
    engine = make_engine(servers.postgres_url, namespace)
    client = redis.Redis.from_url(servers.redis_url, decode_responses=True)
    load_small_catalog(engine, client, namespace)
    pipeline = FaultPipeline(servers, namespace, topic, deadletter, engine, client, LocalStack({}, log_dir))
    pipeline.stack = LocalStack.with_free_ports(pipeline.env(), log_dir)
    try:
        pipeline.stack.start(services)
        yield pipeline
    finally:
        pipeline.stack.stop()
        engine.dispose()
        with create_engine(servers.postgres_url).begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE'))
        drop_namespace_keys(client, namespace)
        client.close()
        admin = KafkaAdminClient(bootstrap_servers=servers.kafka_bootstrap)
        try:
            admin.delete_topics([topic, deadletter])
        finally:
            admin.close()
