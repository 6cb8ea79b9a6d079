"""A pipeline of its own for the replay and privacy tests: a namespace, topics, a small catalog and
only the services a test needs (the real ``python -m services.<name>`` processes), all removed after.

The Redis features of two namespaces are compared with :func:`features`, which leaves out the
per-partition watermarks: they are Kafka positions, not features.
"""

from __future__ import annotations

import random
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from kafka.admin import KafkaAdminClient
from sqlalchemy import Engine, create_engine, select, text

from scripts.local_stack import REPO_ROOT, LocalStack
from shared.events import EVENT_ADAPTER
from shared.kafka import ensure_topics, make_producer, send_events
from shared.store import tables
from shared.store.catalog import CatalogBundle, CatalogItem, CatalogWriter
from shared.store.migrate import make_engine, upgrade_to_head
from shared.store.rebuild import drop_namespace_keys
from shared.store.redis_keys import NamespaceKeys
from tests.integration.servers import KAFKA, POSTGRES_URL, REDIS_URL
from tests.integration.waiting import wait_for

PARTITIONS = 3
CATALOG = "shop"
CATEGORIES = (("Outdoor", "Tents"), ("Outdoor", "Stoves"), ("Kitchen", "Coffee"), ("Kitchen", "Knives"))
ITEMS = tuple(f"i{n:02d}" for n in range(12))
BUNDLES = {"b1": ("i01", "i02"), "b2": ("i03", "i04", "i05"), "b3": ("i06", "i07")}
QUERIES = ("tent", "camping stove", "espresso", "chef knife")


@dataclass
class IsolatedPipeline:
    run_id: str
    namespace: str
    topic: str
    deadletter_topic: str
    engine: Engine
    redis: redis.Redis
    stack: LocalStack
    namespaces: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)

    def env(self, namespace: str | None = None) -> dict[str, str]:
        """The settings of a command run beside the services (a CLI), in ``namespace`` (default: ours)."""
        return {
            "BUNDLEWISE_POSTGRES_URL": POSTGRES_URL,
            "BUNDLEWISE_REDIS_URL": REDIS_URL,
            "BUNDLEWISE_KAFKA_BOOTSTRAP": KAFKA,
            "BUNDLEWISE_NAMESPACE": namespace or self.namespace,
            "BUNDLEWISE_EVENTS_TOPIC": self.topic,
            "BUNDLEWISE_DEADLETTER_TOPIC": self.deadletter_topic,
            "BUNDLEWISE_EVENTS_PARTITIONS": str(PARTITIONS),
        }

    def scratch_namespace(self, purpose: str) -> str:
        """A namespace name of this run, dropped (schema and keys) at the end."""
        name = f"{purpose}_{self.run_id}"
        self.namespaces.append(name)
        return name

    def scratch_topic(self, purpose: str) -> str:
        name = f"{purpose}-{self.run_id}.v1"
        self.topics.append(name)
        return name

    def produce(self, events: Sequence[dict[str, Any]], topic: str | None = None) -> None:
        producer = make_producer(KAFKA, f"it-{self.run_id}")
        try:
            send_events(producer, topic or self.topic, [EVENT_ADAPTER.validate_python(e) for e in events])
        finally:
            producer.close()

    def stored_event_ids(self, namespace: str | None = None) -> set[str]:
        engine = self.engine if namespace is None else make_engine(POSTGRES_URL, namespace, pool_size=1)
        try:
            with engine.connect() as conn:
                return set(conn.execute(select(tables.events.c.event_id)).scalars())
        finally:
            if namespace is not None:
                engine.dispose()

    def wait_until_stored(self, event_ids: Sequence[str]) -> None:
        wanted = set(event_ids)
        wait_for(self.stored_event_ids, lambda stored: wanted <= stored, 30, f"{len(wanted)} events in PostgreSQL")

    def features(self, namespace: str | None = None) -> dict[str, object]:
        """Every Redis key of ``namespace`` but its bookkeeping (watermarks, catalog versions and the
        list of catalogs), named without the namespace prefix."""
        keys = NamespaceKeys(namespace or self.namespace)
        prefix = keys.prefix + ":"
        dumped: dict[str, object] = {}
        for key in self.redis.scan_iter(match=prefix + "*", count=5000):
            name = key.removeprefix(prefix)
            if name.startswith("wm:") or name.rsplit(":", 1)[-1] == "catalog_version" or key == keys.catalogs():
                continue
            kind = self.redis.type(key)
            if kind == "zset":
                dumped[name] = self.redis.zrange(key, 0, -1, withscores=True)
            elif kind == "hash":
                dumped[name] = self.redis.hgetall(key)
            elif kind == "set":
                dumped[name] = self.redis.smembers(key)
            else:
                dumped[name] = self.redis.get(key)
        return dumped

    def bundlewise(self, *args: str, namespace: str | None = None) -> subprocess.CompletedProcess[str]:
        """Runs ``bin/bundlewise`` as an operator would, with this pipeline's settings."""
        env = {**self.stack.service_env("cli"), **self.env(namespace)}
        return subprocess.run(
            [str(REPO_ROOT / "bin" / "bundlewise"), *args],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )


def load_small_catalog(engine: Engine, client: redis.Redis, namespace: str) -> None:
    writer = CatalogWriter(engine, client, namespace)
    writer.upsert_catalog(CATALOG, "Test shop", "tests/integration/isolated_pipeline.py", "EUR")
    writer.upsert_items(
        CATALOG,
        [
            CatalogItem(item_id, f"Item {item_id}", CATEGORIES[n % len(CATEGORIES)], price=10.0 + n)
            for n, item_id in enumerate(ITEMS)
        ],
    )
    writer.upsert_bundles(
        CATALOG,
        [
            CatalogBundle(bundle_id, f"Bundle {bundle_id}", items, retired=bundle_id == "b3")
            for bundle_id, items in BUNDLES.items()
        ],
    )


def shopper_events(
    prefix: str, users: Sequence[str], per_user: int, start: datetime, seed: int, catalog: str = CATALOG
) -> list[dict[str, Any]]:
    """A seeded mix of every event type: sessions with carts and purchases, reviews with text,
    searches, bundle impressions (at varied positions) and outcomes, and a few items the catalog does
    not have yet."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    kinds = ["view", "view", "click", "add_to_cart", "purchase", "review", "search", "bundle_impression"]
    for user in users:
        moment = start + timedelta(minutes=rng.randrange(60))
        session = f"{user}-s0"
        for n in range(per_user):
            if rng.random() < 0.2:
                session = f"{user}-s{n}"
            moment += timedelta(seconds=rng.randrange(1, 600))
            kind = rng.choice(kinds)
            item = rng.choice(ITEMS) if rng.random() < 0.9 else f"new-{rng.randrange(3)}"
            event: dict[str, Any] = {
                "type": kind,
                "event_id": f"{prefix}-{user}-{n:04d}",
                "catalog_id": catalog,
                "user_id": user,
                "session_id": session,
                "event_time": moment.isoformat(),
            }
            if kind in {"view", "click", "add_to_cart", "purchase"}:
                event["item_id"] = item
            elif kind == "review":
                event |= {"item_id": item, "rating": rng.randint(1, 5), "text": f"review by {user}: sturdy"}
            elif kind == "search":
                event["query"] = rng.choice(QUERIES)
            else:
                shown = rng.sample(["b1", "b2"], 2)
                # Now and then lower in the list (n % 3 others above them): looks then add up to sums
                # such as 1/3 + 1/4 that no float holds exactly, whose strings depend on their order.
                event |= {
                    "impression_id": f"imp-{user}-{n}",
                    "bundles": [
                        {"bundle_id": b, "position": n % 3 + p, "propensity": 0.5} for p, b in enumerate(shown)
                    ],
                }
                if rng.random() < 0.5:
                    events.append(event)
                    moment += timedelta(seconds=5)
                    outcome = rng.choice(["bundle_click", "bundle_purchase"])
                    event = {
                        "type": outcome,
                        "event_id": f"{prefix}-{user}-{n:04d}-o",
                        "catalog_id": catalog,
                        "user_id": user,
                        "session_id": session,
                        "event_time": moment.isoformat(),
                        "bundle_id": shown[0],
                        "impression_id": f"imp-{user}-{n}",
                    }
            events.append(event)
    return events


@contextmanager
def isolated_pipeline(
    purpose: str,
    log_dir: Path,
    services: tuple[str, ...] = ("ingestion",),
    service_env: Mapping[str, str] | None = None,
) -> Iterator[IsolatedPipeline]:
    """Our namespace (migrated, with the small catalog), topics and ``services``; all gone afterwards.

    ``service_env`` adds settings for the services (e.g. a gateway's limits)."""
    run_id = uuid.uuid4().hex[:8]
    namespace = f"{purpose}_{run_id}"
    topic, deadletter = f"it-{purpose}-{run_id}.events.v1", f"it-{purpose}-{run_id}.deadletter.v1"
    ensure_topics(KAFKA, {topic: PARTITIONS, deadletter: 1})
    upgrade_to_head(POSTGRES_URL, namespace)
    engine = make_engine(POSTGRES_URL, namespace)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    load_small_catalog(engine, client, namespace)
    pipeline = IsolatedPipeline(run_id, namespace, topic, deadletter, engine, client, LocalStack({}, log_dir))
    pipeline.stack = LocalStack.with_free_ports({**pipeline.env(), **(service_env or {})}, log_dir)
    try:
        pipeline.stack.start(services)
        yield pipeline
    finally:
        codes = pipeline.stack.stop()
        engine.dispose()
        with create_engine(POSTGRES_URL).begin() as conn:
            for name in [namespace, *pipeline.namespaces]:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        for name in [namespace, *pipeline.namespaces]:
            drop_namespace_keys(client, name)
        client.close()
        admin = KafkaAdminClient(bootstrap_servers=KAFKA)
        try:
            existing = set(admin.list_topics())
            admin.delete_topics([t for t in [topic, deadletter, *pipeline.topics] if t in existing])
        finally:
            admin.close()
    assert codes == dict.fromkeys(codes, 0), f"services did not stop gracefully: {codes}; logs in {log_dir}"
