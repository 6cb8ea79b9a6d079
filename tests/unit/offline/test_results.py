"""Specification of run summaries: means, seed spread, and when a figure counts as final."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from services.ranker.offline.results import RunResult, summarize, summarize_model


def result(model: str, seed: int, recall: float, epochs: int = 100, planned: int = 100) -> RunResult:
    return RunResult(
        dataset="youshu",
        split="standard",
        model=model,
        seed=seed,
        hyperparameters={"dim": 64},
        tune={"recall@20": recall - 0.01},
        test={"recall@20": recall},
        seconds=120.0,
        threads=1,
        device="cpu",
        best_epoch=epochs,
        epochs_trained=epochs,
        epochs_planned=planned,
    )


def test_summary_is_the_mean_and_sample_deviation_over_seeds() -> None:
    summary = summarize_model([result("m", 0, 0.28), result("m", 1, 0.30), result("m", 2, 0.29)])
    assert summary["recall@20"] == pytest.approx(0.29, abs=1e-12)
    assert summary["recall@20_std"] == pytest.approx(0.01, abs=1e-12)
    assert summary["tune_recall@20"] == pytest.approx(0.28, abs=1e-12)
    assert (summary["seeds"], summary["seed_values"], summary["train_minutes"]) == (3, [0, 1, 2], 2.0)


def test_one_seed_has_no_deviation() -> None:
    assert summarize_model([result("m", 0, 0.28)])["recall@20_std"] is None


def test_runs_with_different_hyperparameters_are_not_averaged() -> None:
    other = RunResult(**{**result("m", 1, 0.3).__dict__, "hyperparameters": {"dim": 32}})
    with pytest.raises(ValueError, match="runs differ"):
        summarize_model([result("m", 0, 0.28), other])


@pytest.mark.parametrize(
    ("runs", "complete"),
    [
        ([result("main", seed, 0.28) for seed in range(3)], True),
        ([result("main", seed, 0.28) for seed in range(2)], False),
        ([result("main", seed, 0.28, epochs=5, planned=5) for seed in range(3)], False),
    ],
    ids=["three full seeds", "two seeds", "five epochs"],
)
def test_the_main_figure_is_complete_only_with_three_fully_trained_seeds(runs: list[RunResult], complete: bool) -> None:
    document = summarize([*runs, result("popularity", 0, 0.2, epochs=0, planned=0)], "main", [])
    assert document["complete"] is complete
    assert math.isclose(document["baselines"]["popularity"]["recall@20"], 0.2)


def test_summary_without_the_main_model_is_refused() -> None:
    with pytest.raises(ValueError, match="no run of the main model"):
        summarize([result("popularity", 0, 0.2)], "main", [])


def test_a_result_survives_writing_and_reading(tmp_path: Path) -> None:
    original = result("m", 0, 0.28)
    assert RunResult.read(original.write(tmp_path)) == original


def test_the_summary_names_each_run_command_and_its_own_provenance() -> None:
    runs = [
        RunResult(**{**result("main", seed, 0.28).__dict__, "provenance": {"command": f"train --seed {seed}"}})
        for seed in range(2)
    ]
    report = {"commit": "abc", "command": "report", "machine": {"cores": 2}, "date": "2026-11-29"}
    document = summarize(runs, "main", [], report)
    assert document["commands"] == ["train --seed 0", "train --seed 1"]
    assert document["provenance"] == report
