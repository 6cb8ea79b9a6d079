"""``python -m services.policy.ope`` over a file of logged events: join, shadow propensities, report."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from services.policy import ope
from shared.events import BundleImpressionEvent, BundleOutcomeEvent, encode_event
from tests.unit.policy.policy_testkit import EVENT_TIME, click, impression


def shadowed(impression_id: str, bundles: list[str], target: list[float], user: str) -> BundleImpressionEvent:
    event = impression("shop", impression_id, bundles, user=user)
    return event.model_copy(
        update={
            "context": {
                ope.SHADOW_POLICY: "contextual_bandit:v3",
                ope.SHADOW_PROPENSITIES: ",".join(str(p) for p in target),
            }
        }
    )


def test_the_command_reports_the_candidate_against_the_logging_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Logged propensities are 0.5 at every position (policy_testkit.impression).
    events: list[BundleImpressionEvent | BundleOutcomeEvent] = [
        shadowed("i1", ["b1", "b2"], [1.0, 0.25], user="u1"),
        shadowed("i2", ["b1", "b2"], [0.5, 0.5], user="u2"),
        impression("shop", "i3", ["b1"], user="u3"),  # no shadow candidate: left out
        click("shop", "i1", "b1", user="u1"),
        click("shop", "i2", "b2", user="u2"),
        click("shop", "i2", "b2", user="u2").model_copy(update={"event_time": EVENT_TIME + timedelta(days=1)}),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(encode_event(e).decode() for e in events) + "\nnot an event\n")

    assert ope.main(["--events", str(path), "--window-s", "600"]) == 0
    report = json.loads(capsys.readouterr().out)

    assert (report["impressions_evaluated"], report["impressions_without_shadow"]) == (2, 1)
    assert report["invalid_events"] == 1
    assert report["join"]["expired"] == 1  # the click a day later
    assert report["logging"]["value"] == pytest.approx(1.0)
    # ips: i1 1 * 1.0/0.5 = 2; i2 1 * 0.5/0.5 = 1
    assert report["estimates"]["ips"]["value"] == pytest.approx(1.5)
    assert report["difference_vs_logging"]["ips"]["value"] == pytest.approx(0.5)
    assert "dr" not in report["estimates"]  # no shadow predictions logged


def test_the_command_fails_when_no_impression_carries_a_candidate(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(encode_event(impression("shop", "i1", ["b1"])).decode() + "\n")

    assert ope.main(["--events", str(path)]) == 1
