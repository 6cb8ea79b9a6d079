"""``kill -9`` of ingestion between its PostgreSQL commit and its Redis update, then a restart.

The window is held open from outside: ``CLIENT PAUSE ... WRITE`` on the (private) Redis makes the
Lua call that applies a batch wait, after PostgreSQL has committed the batch's rows.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import redis

from tests.integration.faults.fault_pipeline import START, USERS, expected_counters, fault_pipeline
from tests.integration.faults.private_stack import PrivateServers
from tests.integration.isolated_pipeline import shopper_events
from tests.integration.waiting import wait_for


def redis_update_held(client: redis.Redis) -> bool:
    """Some client is blocked (flag ``b``) in an EVALSHA: the pause holds ingestion's Lua call."""
    return any(c["cmd"] == "evalsha" and "b" in c["flags"] for c in client.client_list())


def test_a_kill_between_the_postgres_commit_and_the_redis_update_loses_and_doubles_nothing(
    private_servers: PrivateServers, tmp_path: Path
) -> None:
    first = shopper_events("k1", USERS, 8, START, seed=1)
    second = shopper_events("k2", USERS, 8, START + timedelta(hours=2), seed=2)
    with fault_pipeline(private_servers, "kill", tmp_path) as pipeline:
        pipeline.produce(first)
        pipeline.wait_until_all_applied()
        applied_before = pipeline.applied_offsets()
        ingestion = pipeline.stack.processes["ingestion"].process

        pipeline.redis.client_pause(30_000, all=False)  # WRITE: reads still answer
        try:
            pipeline.produce(second)
            wait_for(pipeline.stored_count, lambda rows: rows > len(first), 20, "rows of the second stream")
            wait_for(lambda: redis_update_held(pipeline.redis), bool, 10, "the Redis update held by the pause")
            ingestion.kill()
            ingestion.wait(10)
            wait_for(lambda: redis_update_held(pipeline.redis), lambda held: not held, 10, "the connection to close")
        finally:
            pipeline.redis.client_unpause()
        # The window was hit: PostgreSQL holds rows whose effects never reached Redis.
        assert pipeline.stored_count() > len(first)
        assert pipeline.applied_offsets() == applied_before

        pipeline.stack.processes.pop("ingestion")
        pipeline.stack.start(("ingestion",))
        pipeline.wait_until_all_applied()
        pipeline.stack.stop()  # a rebuild needs ingestion paused

        assert pipeline.stored_ids() == Counter(e["event_id"] for e in first + second)
        assert pipeline.counters() == expected_counters(first + second)
        live = pipeline.features()
        assert pipeline.rebuilt_features() == live
