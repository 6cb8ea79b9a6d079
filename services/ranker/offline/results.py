"""Run results as JSON: one ``result.json`` per run folder, and their summary across seeds.

A summary only ever holds measured figures: it is computed from the run files it names, and says
whether the main model's figure is final (``complete``: at least ``FINAL_SEEDS`` seeds, each trained
for at least ``FINAL_EPOCHS`` epochs or stopped by patience).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
FINAL_SEEDS = 3
FINAL_EPOCHS = 100
"""The training budget of the papers' runs (CrossCBR and MultiCBR train 100 epochs)."""


@dataclass(frozen=True)
class RunResult:
    """One model, one split, one seed: tune and test metrics of the model selected on tune.

    ``epochs_trained`` is 0 for models without gradient training; ``seconds`` is the wall time of
    training plus per-epoch tune evaluation (for untrained models: building and selecting on tune).
    """

    dataset: str
    split: str
    model: str
    seed: int
    hyperparameters: dict[str, Any]
    tune: dict[str, float]
    test: dict[str, float]
    seconds: float
    threads: int
    device: str
    best_epoch: int = 0
    epochs_trained: int = 0
    epochs_planned: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    selected_on_tune: dict[str, Any] = field(default_factory=dict)
    """Settings this run chose on tune after training (they may differ between seeds)."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """Commit, command, machine and date of the run (``benchmarks.provenance.run_metadata``)."""

    def write(self, run_dir: Path) -> Path:
        path = run_dir / RESULT_FILE
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> RunResult:
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    @property
    def trained_fully(self) -> bool:
        return self.epochs_planned == 0 or self.stopped_early or self.epochs_trained >= FINAL_EPOCHS


def summarize_model(runs: Sequence[RunResult]) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds of every test metric, for one model.

    Keys: each test metric (``recall@20``...) as the mean, ``<metric>_std`` (``None`` for one
    seed), ``tune_<metric>`` means, ``seeds``, ``epochs_trained`` (the smallest over seeds),
    ``train_minutes`` (mean), ``device``, ``threads``, and ``hyperparameters`` (of the first run).

    Raises:
        ValueError: ``runs`` is empty, or mixes models, splits or hyperparameters.
    """
    if not runs:
        raise ValueError("no run to summarize")
    first = runs[0]
    for run in runs[1:]:
        if (run.model, run.split, run.hyperparameters) != (first.model, first.split, first.hyperparameters):
            raise ValueError(f"runs differ: {run.model}/{run.split} against {first.model}/{first.split}")
    summary: dict[str, Any] = {}
    for metric in first.test:
        values = [run.test[metric] for run in runs]
        summary[metric] = statistics.fmean(values)
        summary[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
    for metric in first.tune:
        summary[f"tune_{metric}"] = statistics.fmean(run.tune[metric] for run in runs)
    summary.update(
        seeds=len(runs),
        seed_values=sorted(run.seed for run in runs),
        epochs_trained=min(run.epochs_trained for run in runs),
        best_epochs=[run.best_epoch for run in runs],
        selected_on_tune=[run.selected_on_tune for run in runs],
        commands=[run.provenance.get("command") for run in runs],
        train_minutes=statistics.fmean(run.seconds for run in runs) / 60.0,
        device=first.device,
        threads=first.threads,
        hyperparameters=first.hyperparameters,
    )
    return summary


def summarize(
    runs: Iterable[RunResult], main_model: str, sources: Sequence[str], provenance: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``benchmarks/results/youshu.json`` document: the main model's summary at the top level
    (``complete`` says whether it is final), every other model under ``baselines``, and the
    ``provenance`` of the report itself (each model's training commands are under ``commands``).

    Raises:
        ValueError: no run of ``main_model``, or runs of several splits or datasets.
    """
    by_model: dict[str, list[RunResult]] = {}
    for run in runs:
        by_model.setdefault(run.model, []).append(run)
    if main_model not in by_model:
        raise ValueError(f"no run of the main model {main_model!r} among {sorted(by_model)}")
    every_run = [run for model_runs in by_model.values() for run in model_runs]
    if len({(run.dataset, run.split) for run in every_run}) != 1:
        raise ValueError("runs of several datasets or splits: summarize one at a time")
    main_runs = by_model[main_model]
    main = summarize_model(main_runs)
    complete = len(main_runs) >= FINAL_SEEDS and all(run.trained_fully for run in main_runs)
    return {
        "dataset": main_runs[0].dataset,
        "split": main_runs[0].split,
        "protocol": (
            "train on user_bundle_train + all user_item + bundle_item; select the epoch on tune by recall@20; "
            "rank all bundles per test user with training pairs masked; Recall@K = hits / #test positives; "
            "NDCG@K binary gains, ideal DCG over min(#positives, K); mean over users with >= 1 positive"
        ),
        "model": main_model,
        "complete": complete,
        **main,
        "baselines": {
            model: summarize_model(model_runs) for model, model_runs in sorted(by_model.items()) if model != main_model
        },
        "sources": list(sources),
        "provenance": provenance or {},
    }
