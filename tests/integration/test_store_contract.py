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


def impression(event_id: str, user: str, shown: list[tuple[str, int]]) -> Event:
    """``shown``: (bundle id, position) pairs, in the order the list showed them."""
    return EVENT_ADAPTER.validate_python(
        {
            "type": "bundle_impression",
            "event_id": event_id,
            "catalog_id": "amazon",
            "user_id": user,
            "event_time": datetime(2014, 7, 22, tzinfo=UTC),
            "impression_id": f"imp-{event_id}",
            "bundles": [{"bundle_id": b, "position": p, "propensity": 0.5} for b, p in shown],
        }
    )


def outcome(event_id: str, user: str, kind: str, bundle_id: str) -> Event:
    return EVENT_ADAPTER.validate_python(
        {
            "type": kind,
            "event_id": event_id,
            "catalog_id": "amazon",
            "user_id": user,
            "event_time": datetime(2014, 7, 22, tzinfo=UTC),
            "bundle_id": bundle_id,
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


def test_an_impression_adds_one_over_one_plus_the_position_of_each_shown_bundle_to_that_shoppers_looks(
    scratch: tuple[str, Engine, redis.Redis],
) -> None:
    namespace, engine, client = scratch
    writer = FeatureWriter(engine, client, namespace)

    writer.apply(
        [
            DeliveredEvent("t", 0, 10, impression("evt-imp-0001", "u1", [("b1", 0), ("b2", 1)])),
            DeliveredEvent("t", 1, 10, impression("evt-imp-0002", "u2", [("b1", 0)])),
            DeliveredEvent("t", 0, 11, impression("evt-imp-0003", "u1", [("b2", 3), ("b1", 1)])),
        ]
    )

    keys = NamespaceKeys(namespace).catalog("amazon")
    assert client.hgetall(keys.user_bundle_looks("u1")) == {b"b1": b"1.5", b"b2": b"0.75"}  # 1 + 1/2, 1/2 + 1/4
    assert client.hgetall(keys.user_bundle_looks("u2")) == {b"b1": b"1"}
    assert client.hget(keys.bundle_stats("b1"), "impressions") == b"3"


def test_a_click_joins_the_shoppers_clicked_bundles_and_a_purchase_does_not(
    scratch: tuple[str, Engine, redis.Redis],
) -> None:
    namespace, engine, client = scratch
    writer = FeatureWriter(engine, client, namespace)

    writer.apply(
        [
            DeliveredEvent("t", 0, 10, outcome("evt-click-0001", "u1", "bundle_click", "b1")),
            DeliveredEvent("t", 0, 11, outcome("evt-buy-00001", "u1", "bundle_purchase", "b2")),
            DeliveredEvent("t", 1, 10, outcome("evt-click-0002", "u2", "bundle_click", "b3")),
        ]
    )

    keys = NamespaceKeys(namespace).catalog("amazon")
    assert client.smembers(keys.user_bundle_clicks("u1")) == {b"b1"}
    assert client.smembers(keys.user_bundles("u1")) == {b"b2"}
    assert client.smembers(keys.user_bundle_clicks("u2")) == {b"b3"}


def test_looks_and_clicks_delivered_again_at_the_same_offsets_change_nothing(
    scratch: tuple[str, Engine, redis.Redis],
) -> None:
    namespace, engine, client = scratch
    writer = FeatureWriter(engine, client, namespace)
    batch = [
        DeliveredEvent("t", 0, 10, impression("evt-imp-0001", "u1", [("b1", 1), ("b2", 0)])),
        DeliveredEvent("t", 0, 11, outcome("evt-click-0001", "u1", "bundle_click", "b1")),
        DeliveredEvent("t", 0, 12, impression("evt-imp-0002", "u1", [("b1", 3)])),
    ]
    writer.apply(batch)
    keys = NamespaceKeys(namespace).catalog("amazon")
    looks, clicks = keys.user_bundle_looks("u1"), keys.user_bundle_clicks("u1")
    before = (client.hgetall(looks), client.smembers(clicks))

    again = writer.apply(batch)  # the offsets were not committed: Kafka delivers the batch again
    replayed = writer.apply_to_redis(batch)  # the Redis step alone, run twice

    assert (again.inserted, again.applied_to_redis, replayed) == (0, 0, 0)
    assert (client.hgetall(looks), client.smembers(clicks)) == before
    assert before == ({b"b1": b"0.75", b"b2": b"1"}, {b"b1"})
