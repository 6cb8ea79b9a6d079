"""The storage layout against the real PostgreSQL and Redis: migrations and exactly-once writes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, select, text

from shared.events import EVENT_ADAPTER, Event
from shared.store import tables
from shared.store.feature_updates import DeliveredEvent, FeatureWriter
from shared.store.migrate import alembic_config, make_engine, upgrade_to_head
from shared.store.rebuild import drop_namespace_keys
from shared.store.redis_keys import NamespaceKeys
from tests.integration.servers import POSTGRES_URL, REDIS_URL


@pytest.fixture
def scratch() -> Iterator[tuple[str, Engine, redis.Redis]]:
    namespace = f"contract_{uuid.uuid4().hex[:8]}"
    upgrade_to_head(POSTGRES_URL, namespace)
    engine = make_engine(POSTGRES_URL, namespace)
    client = redis.Redis.from_url(REDIS_URL)
    yield namespace, engine, client
    drop_namespace_keys(client, namespace)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{namespace}" CASCADE'))
    engine.dispose()
    client.close()


def purchase(event_id: str, item: str) -> Event:
    return EVENT_ADAPTER.validate_python(
        {
            "type": "purchase",
            "event_id": event_id,
            "catalog_id": "amazon",
            "user_id": "u1",
            "session_id": "s1",
            "item_id": item,
            "event_time": datetime(2014, 7, 22, tzinfo=UTC),
        }
    )


def test_the_migrations_create_exactly_the_declared_tables(scratch: tuple[str, Engine, redis.Redis]) -> None:
    _, engine, _ = scratch
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), tables.metadata)
    assert differences == []


def test_migrating_twice_changes_nothing(scratch: tuple[str, Engine, redis.Redis]) -> None:
    namespace, engine, _ = scratch
    upgrade_to_head(POSTGRES_URL, namespace)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    assert versions == [ScriptDirectory.from_config(alembic_config(POSTGRES_URL, namespace)).get_current_head()]


def test_a_batch_applied_twice_counts_once(scratch: tuple[str, Engine, redis.Redis]) -> None:
    namespace, engine, client = scratch
    writer = FeatureWriter(engine, client, namespace)
    batch = [
        DeliveredEvent("t", 0, 10, purchase("evt-a-000001", "i1")),
        DeliveredEvent("t", 0, 11, purchase("evt-b-000001", "i2")),
    ]

    first = writer.apply(batch)
    again = writer.apply(batch)

    keys = NamespaceKeys(namespace).catalog("amazon")
    assert (first.inserted, first.applied_to_redis) == (2, 2)
    assert (again.inserted, again.applied_to_redis) == (0, 0)
    assert client.zscore(keys.item_popularity(), "i1") == 5
    assert client.zscore(keys.item_neighbours("i1"), "i2") == 1


def test_a_duplicate_at_a_new_offset_is_not_applied_again(scratch: tuple[str, Engine, redis.Redis]) -> None:
    namespace, engine, client = scratch
    writer = FeatureWriter(engine, client, namespace)
    writer.apply([DeliveredEvent("t", 0, 10, purchase("evt-a-000001", "i1"))])

    result = writer.apply([DeliveredEvent("t", 1, 99, purchase("evt-a-000001", "i1"))])

    assert (result.inserted, result.duplicates, result.applied_to_redis) == (0, 1, 0)
    assert client.zscore(NamespaceKeys(namespace).catalog("amazon").item_popularity(), "i1") == 5


def test_rows_committed_before_a_crash_are_applied_to_redis_on_redelivery(
    scratch: tuple[str, Engine, redis.Redis],
) -> None:
    namespace, engine, client = scratch
    writer = FeatureWriter(engine, client, namespace)
    batch = [DeliveredEvent("t", 0, 10, purchase("evt-a-000001", "i1"))]
    with engine.begin() as conn:  # the crash window: PostgreSQL committed, Redis never written
        conn.execute(
            tables.events.insert(),
            [
                {
                    "catalog_id": "amazon",
                    "event_id": "evt-a-000001",
                    "event_type": "purchase",
                    "user_id": "u1",
                    "event_time": datetime(2014, 7, 22, tzinfo=UTC),
                    "kafka_topic": "t",
                    "kafka_partition": 0,
                    "kafka_offset": 10,
                    "payload": {},
                }
            ],
        )

    result = writer.apply(batch)

    assert (result.inserted, result.applied_to_redis) == (0, 1)
    assert client.zscore(NamespaceKeys(namespace).catalog("amazon").item_popularity(), "i1") == 5
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tables.events)).scalar_one() == 1
