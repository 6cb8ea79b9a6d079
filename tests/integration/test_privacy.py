"""Deleting a shopper on the real servers: through the gateway's API and the CLI, rows and keys go,
the aggregates equal a rebuild from the rows that remain, and later replays leave their events out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select

from services.ingestion import replay
from shared.store import privacy, tables
from shared.store.feature_updates import INTERACTION_WEIGHTS
from shared.store.privacy import user_digest
from shared.store.rebuild import rebuild_redis
from shared.store.redis_keys import NamespaceKeys
from tests.integration.isolated_pipeline import CATALOG, IsolatedPipeline, isolated_pipeline, shopper_events
from tests.integration.servers import REDIS_URL


@dataclass(frozen=True)
class Shoppers:
    pipeline: IsolatedPipeline
    events: list[dict[str, Any]]
    deleted: str
    deleted_events: list[dict[str, Any]]


@pytest.fixture(scope="module")
def shoppers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shoppers]:
    """Four shoppers' histories, ingested by the real ingestion service; the gateway runs beside it."""
    with isolated_pipeline("privacy", tmp_path_factory.mktemp("privacy-logs"), ("ingestion", "gateway")) as pipeline:
        deleted = f"alice-{pipeline.run_id}"
        users = [deleted, f"bob-{pipeline.run_id}", f"cat-{pipeline.run_id}", f"dan-{pipeline.run_id}"]
        events = shopper_events("p", users, 40, datetime(2014, 7, 22, tzinfo=UTC), seed=7)
        # alice shares baskets with others: the same two items in her session and in bob's
        for user in users[:2]:
            for n, item in enumerate(("i01", "i02")):
                events.append(
                    {
                        "type": "purchase",
                        "event_id": f"p-{user}-pair-{n}",
                        "catalog_id": CATALOG,
                        "user_id": user,
                        "session_id": f"{user}-pair",
                        "item_id": item,
                        "event_time": datetime(2014, 7, 23, 12, n, tzinfo=UTC).isoformat(),
                    }
                )
        pipeline.produce(events)
        pipeline.wait_until_stored([e["event_id"] for e in events])
        yield Shoppers(pipeline, events, deleted, [e for e in events if e["user_id"] == deleted])


def user_rows(shoppers: Shoppers, user: str) -> tuple[int, int]:
    with shoppers.pipeline.engine.connect() as conn:
        events = conn.execute(select(tables.events.c.event_id).where(tables.events.c.user_id == user)).all()
        users = conn.execute(select(tables.users.c.user_id).where(tables.users.c.user_id == user)).all()
    return len(events), len(users)


def deleted_users(shoppers: Shoppers) -> set[str]:
    with shoppers.pipeline.engine.connect() as conn:
        digests = set(conn.execute(select(tables.privacy_denylist.c.user_digest)).scalars())
    return {e["user_id"] for e in shoppers.events if user_digest(e["user_id"]) in digests}


def test_deleting_a_user_through_the_api_removes_their_rows_keys_and_share_of_aggregates(shoppers: Shoppers) -> None:
    pipeline, alice = shoppers.pipeline, shoppers.deleted
    keys = NamespaceKeys(pipeline.namespace).catalog(CATALOG)
    her_pop_i01 = sum(
        INTERACTION_WEIGHTS.get(e["type"], 0) for e in shoppers.deleted_events if e.get("item_id") == "i01"
    )
    pop_before = pipeline.redis.zscore(keys.item_popularity(), "i01") or 0
    pair_before = pipeline.redis.zscore(keys.item_neighbours("i01"), "i02") or 0
    assert her_pop_i01 > 0
    looks, clicks = keys.user_bundle_looks(alice), keys.user_bundle_clicks(alice)
    personal = [keys.user_recent_items(alice), keys.user_categories(alice), keys.user_bundles(alice), looks, clicks]
    assert {"bundle_impression", "bundle_click"} <= {e["type"] for e in shoppers.deleted_events}
    assert pipeline.redis.exists(keys.user_recent_items(alice), looks, clicks, keys.session_items(f"{alice}-pair")) == 4

    reply = httpx.delete(
        f"{pipeline.stack.gateway_url}/v1/users/{alice}",
        params={"catalog_id": CATALOG},
        headers=pipeline.stack.auth_headers(),
        timeout=30,
    )

    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert (answer["events_deleted"], answer["user_row_deleted"], answer["denylisted"]) == (
        len(shoppers.deleted_events),
        True,
        True,
    )
    assert user_rows(shoppers, alice) == (0, 0)
    sessions = {keys.session_items(e["session_id"]) for e in shoppers.deleted_events}
    assert pipeline.redis.exists(*personal, *sessions) == 0
    assert (pipeline.redis.zscore(keys.item_popularity(), "i01") or 0) == pop_before - her_pop_i01
    assert pipeline.redis.zscore(keys.item_neighbours("i01"), "i02") == pair_before - 1  # bob's pair stays
    with pipeline.engine.connect() as conn:
        denied = (
            conn.execute(
                select(tables.privacy_denylist).where(tables.privacy_denylist.c.user_digest == user_digest(alice))
            )
            .mappings()
            .one()
        )
    assert (denied["catalog_id"], denied["events_deleted"]) == (CATALOG, len(shoppers.deleted_events))
    assert denied["completed_at"] is not None

    features_after_deletion = pipeline.features()
    assert f"{CATALOG}:user_bundle_looks:bob-{pipeline.run_id}" in features_after_deletion  # compared below
    rebuild_redis(pipeline.engine, redis.Redis.from_url(REDIS_URL), pipeline.namespace)
    assert pipeline.features() == features_after_deletion

    logs = (pipeline.stack.log_dir / "gateway.log").read_text() + (pipeline.stack.log_dir / "ingestion.log").read_text()
    assert alice not in logs
    assert "review by" not in logs


def test_deleting_again_deletes_nothing_more(shoppers: Shoppers) -> None:
    pipeline = shoppers.pipeline
    before = pipeline.features()

    reply = httpx.delete(
        f"{pipeline.stack.gateway_url}/v1/users/{shoppers.deleted}",
        params={"catalog_id": CATALOG},
        headers=pipeline.stack.auth_headers(),
        timeout=30,
    )

    assert reply.status_code == 200, reply.text
    assert (reply.json()["events_deleted"], reply.json()["aggregates_corrected"]) == (0, 0)
    assert pipeline.features() == before


def test_later_replays_leave_the_deleted_users_events_out(
    shoppers: Shoppers, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = shoppers.pipeline
    target, copy = pipeline.scratch_namespace("afterdelete"), pipeline.scratch_topic("it-privacy-copy")

    def run(*argv: str) -> dict[str, Any]:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in pipeline.env().items():
                patch.setenv(name, value)
            assert replay.main([*argv, "--json", "--quiet"]) == 0
        summary: dict[str, Any] = json.loads(capsys.readouterr().out.splitlines()[-1])
        return summary

    into_namespace = run("--namespace", target)
    into_topic = run("--to-topic", copy)
    from_copy = run("--topic", copy, "--dry-run")

    gone = deleted_users(shoppers)
    assert shoppers.deleted in gone
    denied = sum(1 for e in shoppers.events if e["user_id"] in gone)
    others = len(shoppers.events) - denied
    assert (into_namespace["denied"], into_namespace["replayed"]) == (denied, others)
    assert (into_topic["denied"], into_topic["replayed"]) == (denied, others)
    assert (from_copy["read"], from_copy["denied"]) == (others, 0)
    assert pipeline.features(target) == pipeline.features()  # as if she had never been there


def test_the_cli_deletes_a_user_only_when_told_yes(shoppers: Shoppers) -> None:
    pipeline, bob = shoppers.pipeline, f"bob-{shoppers.pipeline.run_id}"
    events_of_bob = sum(1 for e in shoppers.events if e["user_id"] == bob)

    asked = pipeline.bundlewise("delete-user", "--catalog", CATALOG, "--user", bob)

    assert asked.returncode == 1
    assert "would delete user p_" in asked.stdout
    assert f"{events_of_bob} events" in asked.stdout
    assert user_rows(shoppers, bob) == (events_of_bob, 1)

    done = pipeline.bundlewise("delete-user", "--catalog", CATALOG, "--user", bob, "--yes")

    assert done.returncode == 0, done.stderr
    assert "deleted user p_" in done.stdout
    assert bob not in done.stdout + done.stderr
    assert user_rows(shoppers, bob) == (0, 0)
    features = pipeline.features()
    refused = pipeline.bundlewise("rebuild")
    assert refused.returncode == 1
    assert "Stop ingestion" in refused.stderr
    rebuilt = pipeline.bundlewise("rebuild", "--yes")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"rebuilt namespace {pipeline.namespace}:" in rebuilt.stdout
    assert pipeline.features() == features


def test_an_erasure_cut_short_after_its_redis_step_is_finished_by_a_retry_without_subtracting_twice(
    shoppers: Shoppers, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, cat = shoppers.pipeline, f"cat-{shoppers.pipeline.run_id}"
    events_of_cat = sum(1 for e in shoppers.events if e["user_id"] == cat)
    client = redis.Redis.from_url(REDIS_URL)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the process died before PostgreSQL committed")

    with monkeypatch.context() as patch:
        patch.setattr(privacy, "delete", crash)
        with pytest.raises(RuntimeError, match="process died"):
            privacy.delete_user(pipeline.engine, client, pipeline.namespace, CATALOG, cat)
    keys = NamespaceKeys(pipeline.namespace).catalog(CATALOG)
    assert pipeline.redis.exists(keys.user_recent_items(cat)) == 0  # Redis was erased ...
    assert user_rows(shoppers, cat) == (events_of_cat, 1)  # ... PostgreSQL was not

    report = privacy.delete_user(pipeline.engine, client, pipeline.namespace, CATALOG, cat)

    assert (report.events_deleted, report.redis_already_done) == (events_of_cat, True)
    assert user_rows(shoppers, cat) == (0, 0)
    features = pipeline.features()
    rebuild_redis(pipeline.engine, client, pipeline.namespace)
    assert pipeline.features() == features
    client.close()
