"""Events: gateway -> Kafka -> ingestion -> PostgreSQL and Redis, and the dead-letter path."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from kafka import KafkaConsumer
from sqlalchemy import Engine, select

from scripts.local_stack import LocalStack
from shared.events import EVENT_ADAPTER
from shared.kafka import DEADLETTER_REASON_HEADER, make_producer, send_events
from shared.store import tables
from shared.store.rebuild import dump_namespace, rebuild_redis
from shared.store.redis_keys import NamespaceKeys
from tests.integration.catalog_fixture import load_catalogs_into
from tests.integration.servers import KAFKA, REDIS_URL
from tests.integration.waiting import wait_for


def purchase(user_id: str, item_id: str, session_id: str = "it-session") -> dict[str, Any]:
    return {
        "type": "purchase",
        "event_id": f"it-{uuid.uuid4().hex}",
        "catalog_id": "amazon",
        "user_id": user_id,
        "session_id": session_id,
        "item_id": item_id,
        "event_time": datetime.now(UTC).isoformat(),
    }


def stored_event_ids(engine: Engine, event_ids: list[str]) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(select(tables.events.c.event_id).where(tables.events.c.event_id.in_(event_ids))).scalars()
        )


@pytest.fixture(scope="module")
def amazon(stack: LocalStack, engine: Engine) -> None:
    load_catalogs_into(stack, engine, "amazon")


def test_the_replayed_amazon_history_builds_co_purchase_neighbours(
    amazon: None, redis_client: redis.Redis, namespace: str
) -> None:
    keys = NamespaceKeys(namespace).catalog("amazon")
    # electronic session 232 holds items 10675 and 3500 (a tablet case bought with a tablet case);
    # the rows are in PostgreSQL already, Redis follows within a batch
    shared = wait_for(
        lambda: redis_client.zscore(keys.item_neighbours("electronic-10675"), "electronic-3500") or 0,
        lambda count: count >= 1,
        what="the pair in Redis",
    )
    assert shared >= 1
    assert redis_client.zcard(keys.item_popularity()) > 5000


def test_an_event_posted_to_the_gateway_lands_in_postgres_and_redis(
    amazon: None, stack: LocalStack, engine: Engine, redis_client: redis.Redis, namespace: str
) -> None:
    user = f"it-shopper-{uuid.uuid4().hex[:6]}"
    event = purchase(user, "electronic-126")

    reply = httpx.post(
        f"{stack.gateway_url}/v1/events", json={"events": [event]}, headers=stack.auth_headers(), timeout=10
    )

    assert reply.status_code == 200, reply.text
    assert reply.json()["accepted"] == 1
    wait_for(lambda: stored_event_ids(engine, [event["event_id"]]), lambda ids: len(ids) == 1, what="the row")
    keys = NamespaceKeys(namespace).catalog("amazon")
    recent = wait_for(lambda: redis_client.zrange(keys.user_recent_items(user), 0, -1), bool, what="features")
    assert recent == ["electronic-126"]
    with engine.connect() as conn:  # a shopper the store had never synced is created on first sight
        assert conn.execute(select(tables.users.c.user_id).where(tables.users.c.user_id == user)).scalar_one() == user


def test_an_invalid_event_is_refused_by_the_api_with_its_reason(stack: LocalStack) -> None:
    event = purchase("it-shopper", "electronic-126")
    del event["item_id"]

    reply = httpx.post(
        f"{stack.gateway_url}/v1/events", json={"events": [event]}, headers=stack.auth_headers(), timeout=10
    )

    assert 400 <= reply.status_code < 500
    assert "item_id" in reply.text


def test_an_invalid_message_on_kafka_is_deadlettered_and_its_neighbours_still_land(
    amazon: None, engine: Engine, topics: dict[str, str]
) -> None:
    good_before, good_after = purchase("it-dlq", "electronic-49"), purchase("it-dlq", "electronic-126")
    marker = uuid.uuid4().hex
    producer = make_producer(KAFKA, "it-dlq")
    try:
        send_events(producer, topics["events"], [EVENT_ADAPTER.validate_python(good_before)])
        producer.send(
            topics["events"], key=b"amazon:it-dlq", value=json.dumps({"type": "purchase", "m": marker}).encode()
        )
        send_events(producer, topics["events"], [EVENT_ADAPTER.validate_python(good_after)])
    finally:
        producer.close()

    ids = [good_before["event_id"], good_after["event_id"]]
    wait_for(lambda: stored_event_ids(engine, ids), lambda found: len(found) == 2, what="both valid events")
    consumer = KafkaConsumer(
        topics["deadletter"], bootstrap_servers=KAFKA, auto_offset_reset="earliest", consumer_timeout_ms=15_000
    )
    try:
        dead = next(m for m in consumer if marker.encode() in m.value)
    finally:
        consumer.close()
    reason = dict(dead.headers)[DEADLETTER_REASON_HEADER].decode()
    assert "event_id: Field required" in reason
    assert "item_id: Field required" in reason


def test_events_delivered_again_at_new_offsets_change_no_count(
    amazon: None, engine: Engine, redis_client: redis.Redis, namespace: str, topics: dict[str, str]
) -> None:
    user = f"it-dup-{uuid.uuid4().hex[:6]}"
    events = [EVENT_ADAPTER.validate_python(purchase(user, f"electronic-{i}", "it-dup")) for i in (49, 126)]
    keys = NamespaceKeys(namespace).catalog("amazon")
    producer = make_producer(KAFKA, "it-dup")
    try:
        send_events(producer, topics["events"], events)
        wait_for(lambda: stored_event_ids(engine, [e.event_id for e in events]), lambda f: len(f) == 2)
        before = (
            redis_client.zscore(keys.item_popularity(), "electronic-49"),
            redis_client.zscore(keys.item_neighbours("electronic-49"), "electronic-126"),
        )
        # The same events again (a producer retry, a replay), then a sentinel on the same partition.
        sentinel = EVENT_ADAPTER.validate_python(purchase(user, "electronic-3500", "it-dup-2"))
        send_events(producer, topics["events"], [*events, sentinel])
    finally:
        producer.close()
    wait_for(lambda: stored_event_ids(engine, [sentinel.event_id]), bool, what="the sentinel")
    wait_for(lambda: redis_client.zscore(keys.user_recent_items(user), "electronic-3500"), bool)

    after = (
        redis_client.zscore(keys.item_popularity(), "electronic-49"),
        redis_client.zscore(keys.item_neighbours("electronic-49"), "electronic-126"),
    )
    assert after == before
    with engine.connect() as conn:
        rows = conn.execute(select(tables.events.c.event_id).where(tables.events.c.user_id == user)).all()
    assert len(rows) == 3


def bundle_feedback(users: list[str], bundle_ids: list[str], lists: int) -> list[dict[str, Any]]:
    """``lists`` impressions per shopper, the shoppers taking turns, each showing ``bundle_ids`` lower
    and lower (bundle ``k`` of list ``n`` at position ``n + k``: looks add up to sums of 1/2, 1/3,
    1/5 ... whose float strings depend on their order), then a click of each shopper's, the last of
    their events."""
    events = [
        {
            "type": "bundle_impression",
            "event_id": f"it-{uuid.uuid4().hex}",
            "catalog_id": "amazon",
            "user_id": user,
            "event_time": datetime.now(UTC).isoformat(),
            "impression_id": f"imp-{uuid.uuid4().hex[:12]}",
            "bundles": [{"bundle_id": b, "position": n + k, "propensity": 0.5} for k, b in enumerate(bundle_ids)],
        }
        for n in range(lists)
        for user in users
    ]
    return events + [
        {
            "type": "bundle_click",
            "event_id": f"it-{uuid.uuid4().hex}",
            "catalog_id": "amazon",
            "user_id": user,
            "event_time": datetime.now(UTC).isoformat(),
            "bundle_id": bundle_ids[-1],
        }
        for user in users
    ]


def test_redis_equals_a_rebuild_from_postgres(
    amazon: None, engine: Engine, redis_client: redis.Redis, namespace: str, topics: dict[str, str]
) -> None:
    # The Amazon history has no bundle feedback: some shoppers on several partitions see lists and click.
    keys = NamespaceKeys(namespace).catalog("amazon")
    shoppers = [f"it-looks-{uuid.uuid4().hex[:6]}-{n}" for n in range(6)]
    shown = sorted(map(str, redis_client.smembers(keys.live_bundles())))[:3]  # the client decodes: str already
    producer = make_producer(KAFKA, "it-looks")
    try:
        send_events(
            producer,
            topics["events"],
            [EVENT_ADAPTER.validate_python(e) for e in bundle_feedback(shoppers, shown, lists=20)],
        )
    finally:
        producer.close()
    # A shopper's click is their last event (on their one partition): once it is in, all of theirs are.
    wait_for(
        lambda: [redis_client.smembers(keys.user_bundle_clicks(shopper)) for shopper in shoppers],
        all,
        what="every shopper's click",
    )
    live = dump_namespace(redis_client, namespace)
    assert [sorted(live[keys.user_bundle_looks(shopper)]) for shopper in shoppers] == [shown] * len(shoppers)

    report = rebuild_redis(engine, redis.Redis.from_url(REDIS_URL), namespace)

    assert report.events > 10_000
    rebuilt = dump_namespace(redis_client, namespace)
    assert rebuilt.keys() == live.keys()
    assert rebuilt == live
