"""Redis loses everything; a rebuild from PostgreSQL brings back the same features."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from shared.store.rebuild import rebuild_redis
from tests.integration.faults.fault_pipeline import START, USERS, expected_counters, fault_pipeline
from tests.integration.faults.private_stack import PrivateServers
from tests.integration.isolated_pipeline import shopper_events


def test_redis_flushed_then_rebuilt_from_postgres_holds_the_same_features_and_ingestion_carries_on(
    private_servers: PrivateServers, tmp_path: Path
) -> None:
    events = shopper_events("rl", USERS, 10, START, seed=21)
    later = shopper_events("rl2", USERS, 4, START + timedelta(hours=3), seed=22)
    with fault_pipeline(private_servers, "flush", tmp_path) as pipeline:
        pipeline.produce(events)
        pipeline.wait_until_all_applied()
        pipeline.stack.stop()  # a rebuild needs ingestion paused
        before = pipeline.features()

        pipeline.redis.flushall()
        assert pipeline.features() == {}
        rebuild_redis(pipeline.engine, pipeline.redis, pipeline.namespace)

        assert pipeline.features() == before
        # The watermarks came back with the rebuild: ingestion resumes without applying anything twice.
        pipeline.stack.start(("ingestion",))
        pipeline.produce(later)
        pipeline.wait_until_all_applied()
        assert pipeline.counters() == expected_counters(events + later)
