"""Live ingestion keeps a deleted shopper out: their events written to Kafka before the erasure
ended are not stored when consumed after it (a consumer that lagged, or read the topic again),
while what they send afterwards is new data and lands. On the real servers."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from shared.store import privacy, tables
from tests.integration.isolated_pipeline import CATALOG, isolated_pipeline, shopper_events


def test_events_written_before_a_shoppers_erasure_stay_out_and_those_sent_after_land(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # No ingestion yet: the events wait in Kafka, as they do behind a lagging consumer.
    with isolated_pipeline("denylive", tmp_path_factory.mktemp("denylive-logs"), services=()) as pipeline:
        deleted, kept = f"erin-{pipeline.run_id}", f"finn-{pipeline.run_id}"
        history = shopper_events("h", [deleted, kept], 15, datetime(2014, 7, 22, tzinfo=UTC), seed=3)
        pipeline.produce(history)
        privacy.delete_user(pipeline.engine, pipeline.redis, pipeline.namespace, CATALOG, deleted)
        time.sleep(0.01)  # Kafka timestamps are in milliseconds: what follows is written after the erasure
        returning = [{**e, "event_id": f"back-{e['event_id']}"} for e in history if e["user_id"] == deleted][:3]
        pipeline.produce(returning)

        pipeline.stack.start(("ingestion",))

        pipeline.wait_until_stored([e["event_id"] for e in history if e["user_id"] == kept])
        pipeline.wait_until_stored([e["event_id"] for e in returning])
        with pipeline.engine.connect() as conn:
            stored = set(
                conn.execute(select(tables.events.c.event_id).where(tables.events.c.user_id == deleted)).scalars()
            )
        assert stored == {e["event_id"] for e in returning}
