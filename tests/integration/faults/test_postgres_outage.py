"""PostgreSQL stopped in the middle of a stream and started again."""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from datetime import timedelta
from pathlib import Path

from tests.integration.faults.fault_pipeline import START, USERS, expected_counters, fault_pipeline
from tests.integration.faults.private_stack import PrivateServers
from tests.integration.isolated_pipeline import shopper_events


def metric_value(port: int, sample: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
    return 0.0


def test_postgres_stopped_mid_stream_dead_letters_nothing_and_every_event_lands_once(
    private_servers: PrivateServers, tmp_path: Path
) -> None:
    batches = [shopper_events(f"pg{n}", USERS, 3, START + timedelta(hours=n), seed=n) for n in range(10)]
    with fault_pipeline(private_servers, "pgdown", tmp_path) as pipeline:
        pipeline.produce(batches[0])
        pipeline.wait_until_all_applied()
        for number, batch in enumerate(batches[1:], start=1):
            if number == 3:
                private_servers.stop_postgres()
            if number == 7:
                private_servers.up()  # starts PostgreSQL again; the others are up
            pipeline.produce(batch)
            time.sleep(0.3)
        pipeline.wait_until_all_applied(timeout_s=90)
        retried = metric_value(
            pipeline.stack.ports["ingestion"], 'bundlewise_ingestion_transient_failures_total{dependency="postgres"}'
        )
        pipeline.stack.stop()

        every = [event for batch in batches for event in batch]
        assert retried > 0  # the outage was seen, and waited out
        assert pipeline.end_offsets(pipeline.deadletter_topic) == [0]
        assert pipeline.stored_ids() == Counter(e["event_id"] for e in every)
        assert pipeline.counters() == expected_counters(every)
        live = pipeline.features()
        assert pipeline.rebuilt_features() == live
