"""Replay and re-drive on the real servers: a window of history replayed into a namespace of its own
builds exactly the features the original run built from those events."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from services.ingestion import redrive, replay
from shared.kafka import DEADLETTER_REASON_HEADER, make_producer
from tests.integration.isolated_pipeline import CATALOG, IsolatedPipeline, isolated_pipeline, shopper_events
from tests.integration.servers import KAFKA

# Before and after the window, events of another catalog: any of them replayed by mistake would
# show up as keys the original run's catalog does not have.
OTHER_CATALOG = "elsewhere"


@dataclass(frozen=True)
class History:
    pipeline: IsolatedPipeline
    window_start_ms: int
    window_end_ms: int
    window: list[dict[str, Any]]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """Three stretches produced to the events topic and ingested by the real ingestion service."""
    with isolated_pipeline("replay", tmp_path_factory.mktemp("replay-logs")) as pipeline:
        start = datetime(2014, 7, 22, tzinfo=UTC)
        before = shopper_events("before", ["ann", "bo"], 15, start, seed=1, catalog=OTHER_CATALOG)
        window = shopper_events("window", ["ann", "bo", "cy", "di", "ed"], 30, start, seed=2)
        after = shopper_events("after", ["cy", "fay"], 15, start, seed=3, catalog=OTHER_CATALOG)
        pipeline.produce(before)
        time.sleep(0.01)
        window_start = now_ms()
        pipeline.produce(window)
        window_end = now_ms() + 1
        time.sleep(0.01)
        pipeline.produce(after)
        pipeline.wait_until_stored([e["event_id"] for e in before + window + after])
        yield History(pipeline, window_start, window_end, window)


def run_cli(main: Any, argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    summary: dict[str, Any] = json.loads(out.splitlines()[-1])
    return summary


def test_a_window_replayed_into_a_namespace_builds_the_features_of_the_original_run(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = history.pipeline
    target = pipeline.scratch_namespace("replayed")
    argv = [
        *("--from", str(history.window_start_ms), "--to", str(history.window_end_ms)),
        *("--namespace", target, "--rate", "20000", "--json", "--quiet"),
    ]

    summary = run_cli(replay.main, argv, pipeline.env(), capsys)

    assert (summary["read"], summary["replayed"], summary["new_to_target"]) == (len(history.window),) * 3
    assert (summary["outside_window"], summary["invalid"], summary["filtered"], summary["denied"]) == (0, 0, 0, 0)
    assert pipeline.stored_event_ids(target) == {e["event_id"] for e in history.window}
    original = {k: v for k, v in pipeline.features().items() if k.startswith(f"{CATALOG}:")}
    assert len(original) > 50
    assert pipeline.features(target) == original

    again = run_cli(replay.main, argv, pipeline.env(), capsys)

    assert (again["replayed"], again["new_to_target"]) == (len(history.window), 0)
    assert pipeline.features(target) == original


def test_a_dry_run_counts_the_window_by_type_and_writes_nothing(history: History) -> None:
    pipeline = history.pipeline
    kept = {"purchase", "view", "bundle_click"}
    expected = Counter(e["type"] for e in history.window if e["type"] in kept)

    result = pipeline.bundlewise(
        "replay",
        *("--from", str(history.window_start_ms), "--to", str(history.window_end_ms)),
        *("--type", ",".join(sorted(kept)), "--dry-run", "--json"),
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["by_type"] == dict(sorted(expected.items()))
    assert summary["replayed"] == expected.total()
    assert summary["filtered"] == len(history.window) - expected.total()
    assert summary["target"] == "nowhere (dry run)"
    assert "replay  " in result.stderr  # the progress line


def test_a_fixed_dead_lettered_event_is_redriven_and_lands_and_the_rest_stays(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = history.pipeline
    # Dead-lettered by an older, stricter validator: the event is valid today.
    fixed = shopper_events("redriven", ["gil"], 1, datetime(2014, 8, 1, tzinfo=UTC), seed=4, catalog=OTHER_CATALOG)[0]
    stale_reason = "event_time: timezone offsets other than Z were refused before schema fix 1.1"
    producer = make_producer(KAFKA, "it-redrive")
    try:
        for value, reason in [
            (json.dumps(fixed).encode(), stale_reason),
            (b'{"type": "purchase", "broken": true', "Invalid JSON: EOF while parsing an object"),
        ]:
            producer.send(
                pipeline.deadletter_topic, key=b"k", value=value, headers=[(DEADLETTER_REASON_HEADER, reason.encode())]
            ).get(timeout=10)
    finally:
        producer.close()

    listing = run_cli(redrive.main, ["--dry-run", "--json"], pipeline.env(), capsys)

    assert listing["reasons"] == {stale_reason: 1, "Invalid JSON: EOF while parsing an object": 1}
    assert listing["now_valid_by_reason"] == {stale_reason: 1}
    assert listing["redriven"] == 1
    assert fixed["event_id"] not in pipeline.stored_event_ids()

    sent = run_cli(redrive.main, ["--reason", "SCHEMA FIX", "--json"], pipeline.env(), capsys)

    assert (sent["matched"], sent["redriven"]) == (1, 1)
    pipeline.wait_until_stored([fixed["event_id"]])
    left = run_cli(redrive.main, ["--reason", "invalid json", "--dry-run", "--json"], pipeline.env(), capsys)
    assert (left["matched"], left["redriven"]) == (1, 0)
    assert sum(left["still_invalid"].values()) == 1
