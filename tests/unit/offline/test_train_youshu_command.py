"""Specification of the Youshu commands end to end, on a tiny folder in the Youshu file format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from services.ranker.offline import report_youshu, train_youshu
from services.ranker.offline.results import RunResult
from tests.unit.offline.synthetic_bundles import N_BUNDLES, N_ITEMS, N_USERS, synthetic_pairs


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "Youshu"
    folder.mkdir(parents=True)
    (folder / "Youshu_data_size.txt").write_text(f"{N_USERS}\t{N_BUNDLES}\t{N_ITEMS}\n")
    pairs = synthetic_pairs()
    files = {
        "user_bundle_train.txt": pairs["train"],
        "user_bundle_tune.txt": pairs["tune"],
        "user_bundle_test.txt": pairs["test"],
        "user_item.txt": pairs["user_item"],
        "bundle_item.txt": pairs["bundle_item"],
    }
    for name, rows in files.items():
        (folder / name).write_text("".join(f"{a}\t{b}\n" for a, b in rows))
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def run(data_dir: Path, run_dir: Path, *args: str) -> RunResult:
    assert train_youshu.main(["--data-dir", str(data_dir), "--run-dir", str(run_dir), *args]) == 0
    return RunResult.read(run_dir / "result.json")


def test_trained_model_writes_tune_and_test_metrics_and_resumes(data_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    common = ["--model", "crossview", "--dim", "8", "--batch-size", "64", "--lr", "0.02"]
    first = run(data_dir, runs / "crossview-seed0", *common, "--epochs", "1")
    assert (first.model, first.split, first.epochs_trained, first.epochs_planned) == ("crossview", "standard", 1, 1)
    assert set(first.test) == {f"{m}@{k}" for m in ("recall", "ndcg") for k in (10, 20, 40, 80)} | {
        "coverage@20",
        "popularity_percentile@20",
        "diversity@20",
    }
    assert first.hyperparameters["edge_dropout"] == 0.2

    longer = run(data_dir, runs / "crossview-seed0", *common, "--epochs", "2")
    assert longer.epochs_trained == 2
    assert longer.history[0] == first.history[0]


def test_report_puts_measured_runs_in_one_file_and_marks_it_incomplete(data_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run(data_dir, runs / "popularity-seed0", "--model", "popularity")
    run(data_dir, runs / "item_cooccurrence-seed0", "--model", "item_cooccurrence")
    crossview_args = ["--model", "crossview", "--dim", "8", "--epochs", "1"]
    for seed in ("0", "1"):
        run(data_dir, runs / f"crossview-seed{seed}", *crossview_args, "--seed", seed)
    out, plot = tmp_path / "youshu.json", tmp_path / "recall.png"

    assert report_youshu.main(["--runs", str(runs), "--out", str(out), "--plot", str(plot)]) == 0

    document = json.loads(out.read_text())
    crossview = [RunResult.read(runs / f"crossview-seed{seed}" / "result.json") for seed in (0, 1)]
    assert document["model"] == "crossview"
    assert document["complete"] is False
    assert document["seeds"] == 2
    assert document["epochs_trained"] == 1
    assert document["recall@20"] == pytest.approx(sum(r.test["recall@20"] for r in crossview) / 2, abs=1e-12)
    assert document["recall@20_std"] is not None
    assert set(document["baselines"]) == {"popularity", "item_cooccurrence"}
    assert document["baselines"]["popularity"]["recall@20_std"] is None
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert document["baselines"]["item_cooccurrence"]["hyperparameters"]["neighbours"] == 0


def test_members_train_from_their_own_seeds_and_score_together(data_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    common = ["--model", "crossview", "--dim", "8", "--batch-size", "64", "--lr", "0.02", "--epochs", "1"]
    single = run(data_dir, runs / "single", *common)
    pair = run(data_dir, runs / "pair", *common, "--members", "2")

    assert all((runs / "pair" / f"member{m}" / "best.pt").is_file() for m in (0, 1))
    assert (single.hyperparameters["members"], pair.hyperparameters["members"]) == (1, 2)

    def learning(history: list[dict[str, object]], member: int) -> list[tuple[object, object]]:
        return [(r["loss"], r["tune"]) for r in history if r["member"] == member]

    # Member 0 is the single model; member 1 starts from another seed.
    assert learning(pair.history, 0) == learning(single.history, 0)
    assert learning(pair.history, 1) != learning(pair.history, 0)
    assert pair.seconds > single.seconds


def test_the_bundle_priors_are_chosen_on_tune_and_recorded(data_dir: Path, tmp_path: Path) -> None:
    common = ["--model", "crossview", "--dim", "8", "--batch-size", "64", "--lr", "0.02", "--epochs", "1"]
    plain = run(data_dir, tmp_path / "runs" / "plain", *common)

    result = run(data_dir, tmp_path / "runs" / "priors", *common, "--bundle-priors")

    assert result.hyperparameters["bundle_priors"] is True
    assert result.selected_on_tune["popularity_weight"] in train_youshu.POPULARITY_WEIGHTS
    assert result.selected_on_tune["new_bundle_boost"] in train_youshu.NEW_BUNDLE_BOOSTS
    # Zero weights are in the grid, so the chosen priors never do worse on tune than none.
    assert result.tune["recall@20"] >= plain.tune["recall@20"]
