"""``python -m services.ranker.offline.youshu_item_overlap``: what two exact item-level terms add to
the trained Youshu cross-view members (``youshu_item_terms``), measured by the papers' protocol, and
the model the ranker serves with them.

``a``, ``w``, ``v`` and ``p`` (and on the cold split a new-bundle boost ``n``) are chosen together on
tune from fixed grids (``youshu_item_terms.GRIDS``), per seed, once by tune Recall@20 and once by
tune NDCG@20 (both reported); nothing is retrained (the members of ``make eval``'s run folders are
loaded). Results: ``benchmarks/results/youshu_item_overlap.json`` (``--split cold``:
``youshu_item_overlap_cold.json``).

The served model is the one chosen by tune NDCG@20 (the stable rule: see docs/bundle-quality.md):
its vectors, with the view share and the prior folded in, and the two terms' weights with Youshu's
bundle contents. Each seed's is written as a run of its own (``crossview_item_terms-seed<n>``) for
``report_youshu``; the first seed's is saved as the ranker's artifact, loaded back as a ranker loads
it and scored on test through the ranker's code (``served`` in the JSON: it must equal the
harness's figure). ``--publish`` records that artifact as the ``youshu`` catalog's newest version
(``$BUNDLEWISE_POSTGRES_URL``, ``$BUNDLEWISE_MODEL_DIR``), which rankers then serve.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from statistics import mean, pstdev

import numpy as np
import torch

from benchmarks.provenance import run_metadata
from services.ranker.models import ServedModel, load_served
from services.ranker.offline.beyond_accuracy import beyond_accuracy
from services.ranker.offline.data import BundleRecData, youshu_data
from services.ranker.offline.evaluation import EmbeddingScorer
from services.ranker.offline.models import CrossViewModel
from services.ranker.offline.publish import YOUSHU_CATALOG, publish_artifact, youshu_artifact, youshu_item_terms
from services.ranker.offline.results import RESULT_FILE, RunResult
from services.ranker.offline.train_youshu import OfflineSettings
from services.ranker.offline.youshu_item_terms import (
    GRIDS,
    SERVED_MODEL_NAME,
    Figures,
    Grid,
    ItemTermsScorer,
    item_terms,
    measure_seed,
    new_bundle_vectors,
    served_model,
    trained_members,
)
from shared.datasets import load_youshu
from shared.store.migrate import make_engine
from shared.store.model_registry import ModelArtifact, ModelVersion, save_artifact

REPO_ROOT = Path(__file__).resolve().parents[3]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
RESULTS_FILES = {
    "standard": RESULTS_DIR / "youshu_item_overlap.json",
    "cold": RESULTS_DIR / "youshu_item_overlap_cold.json",
}


def served_run_result(
    data: BundleRecData,
    members: Sequence[EmbeddingScorer],
    terms: tuple[torch.Tensor, torch.Tensor],
    figures: dict[str, Figures],
    trained: RunResult,
    seconds: float,
    grid: Grid = GRIDS["standard"],
) -> RunResult:
    """The served variant (``chosen_by_ndcg``) of one seed as a run of its own, beside the cross-view
    run ``trained`` whose members it adds terms to, so that ``report_youshu`` reports it with every
    other model. Its time is the members' training plus choosing the terms (``seconds``)."""
    chosen = figures["chosen_by_ndcg"]
    choice: dict[str, float] = chosen["chosen_on_tune"]
    vectors, weights = served_model(data, members, choice)
    overlap, related = terms
    scorer = ItemTermsScorer(vectors, overlap, weights.overlap, related, weights.related, torch.zeros(1))
    return replace(
        trained,
        model=SERVED_MODEL_NAME,
        hyperparameters={
            **trained.hyperparameters,
            "model": SERVED_MODEL_NAME,
            "item_terms_grid": asdict(grid),
            "item_terms_selection": "tune ndcg@20",
        },
        tune=chosen["tune"],
        test={**chosen["test"], **beyond_accuracy(scorer, data, data.test)},
        seconds=trained.seconds + seconds,
        selected_on_tune=choice,
        provenance=run_metadata("services.ranker.offline.youshu_item_overlap", None),
    )


def serve_choice(
    data: BundleRecData,
    models: Sequence[CrossViewModel],
    figures: dict[str, Figures],
    settings: OfflineSettings,
    publish: bool,
) -> dict[str, object]:
    """Saves the ``chosen_by_ndcg`` model of one seed's ``figures`` as the ranker's artifact, loads it
    back as a ranker does and measures its test Recall@20 through the ranker's own scoring, which
    must equal the harness's. So must the same model with its bundles without training pairs taken
    out and scored as bundles synced after training (from their items). With ``publish``, the
    artifact goes to ``$BUNDLEWISE_MODEL_DIR`` and is recorded as the ``youshu`` catalog's newest
    version; without, to a temporary folder."""
    if publish and settings.postgres_url is None:
        raise SystemExit("--publish needs BUNDLEWISE_POSTGRES_URL: the model's version is recorded there")
    chosen = figures["chosen_by_ndcg"]
    choice = chosen["chosen_on_tune"]
    scorer, weights = served_model(data, [model.scorer() for model in models], choice)
    metrics = {f"test_{name}": value for name, value in chosen["test"].items()}
    artifact = youshu_artifact(
        scorer, SERVED_MODEL_NAME, metrics, youshu_item_terms(data, weights), new_bundle_vectors(models, choice)
    )
    with tempfile.TemporaryDirectory() as scratch:
        if publish:
            assert settings.postgres_url is not None
            engine = make_engine(settings.postgres_url, settings.namespace, pool_size=1)
            try:
                number, path = publish_artifact(artifact, settings.model_dir, engine)
            finally:
                engine.dispose()
        else:
            number, path = 0, save_artifact(artifact, Path(scratch))
        version = ModelVersion(SERVED_MODEL_NAME, YOUSHU_CATALOG, number, path.resolve().as_uri(), metrics)
        ranker_recall = ranker_test_recall(load_served(version), data)
        stripped, new_bundles = without_new_bundles(artifact, data)
        stripped_path = save_artifact(stripped, Path(scratch))
        stripped_version = replace(version, artifact_uri=stripped_path.resolve().as_uri())
        synced = load_served(stripped_version)
        synced_recall = ranker_test_recall(synced, data, new_bundles=new_bundles)
        reached_recall = ranker_test_recall(synced, data, new_bundles=new_bundles, only_sharing_an_item=True)
    return {
        "published": f"{version.label}: {path}" if publish else "no (--publish records it)",
        "chosen_on_tune": choice,
        "test_recall@20_harness": chosen["test"]["recall@20"],
        "test_recall@20_ranker_scoring": ranker_recall,
        "bundles_without_training_pairs": len(new_bundles),
        "test_recall@20_ranker_scoring_them_as_synced_after_training": synced_recall,
        "test_recall@20_ranker_scoring_those_sharing_an_item_with_the_shopper": reached_recall,
    }


def ranker_test_recall(
    model: ServedModel,
    data: BundleRecData,
    k: int = 20,
    new_bundles: Mapping[str, Sequence[str]] | None = None,
    only_sharing_an_item: bool = False,
) -> float:
    """Test Recall@K of ``model`` scored as the ranker scores a request: by shopper id, with the
    shopper's items and training bundles as the feature store holds them (``u<row>``, ``i<row>``,
    ``b<row>``), the bundles bought left out. ``new_bundles`` (id -> item ids) are bundles the model
    does not list, scored as synced after training (:meth:`ServedModel.score_new_bundles`); with
    ``only_sharing_an_item``, only those holding one of the shopper's items, about what the ranker's
    candidate step reaches."""
    items: dict[int, list[str]] = {}
    for user, item in data.user_item_pairs.tolist():
        items.setdefault(user, []).append(f"i{item}")
    bought: dict[int, set[str]] = {}
    for user, bundle in data.train_pairs.tolist():
        bought.setdefault(user, set()).add(f"b{bundle}")
    positives: dict[int, set[str]] = {}
    for row, bundle in zip(data.test.positive_rows.tolist(), data.test.positive_bundles.tolist(), strict=True):
        positives.setdefault(row, set()).add(f"b{bundle}")
    recalls = []
    for row, user in enumerate(data.test.users.tolist()):
        if row not in positives:
            continue
        shopper, held, owned = f"u{user}", items.get(user, []), bought.get(user, set())
        held_set = set(held)
        scored = dict(model.top_bundles(shopper, k, exclude=owned, item_ids=held, bought_bundle_ids=owned))
        if new_bundles:
            reached = new_bundles
            if only_sharing_an_item:
                reached = {
                    b: bundle_items for b, bundle_items in new_bundles.items() if not held_set.isdisjoint(bundle_items)
                }
            scored |= model.score_new_bundles(shopper, reached, held, owned)
        top = sorted(scored, key=lambda bundle: (-scored[bundle], bundle))[:k]
        recalls.append(len(set(top) & positives[row]) / len(positives[row]))
    return mean(recalls)


def without_new_bundles(artifact: ModelArtifact, data: BundleRecData) -> tuple[ModelArtifact, dict[str, list[str]]]:
    """``artifact`` as if its bundles without training pairs had been synced after training: their
    rows removed from its vectors and item terms, and their contents (id -> item ids) to score them
    from."""
    new = (data.training_pairs_per_bundle() == 0).numpy()
    kept = np.flatnonzero(~new)
    contents: dict[str, list[str]] = {}
    for bundle, item in data.bundle_item_pairs.tolist():
        if new[bundle]:
            contents.setdefault(f"b{bundle}", []).append(f"i{item}")
    terms = artifact.item_terms
    if terms is not None:
        renumbered = np.full(new.size, -1, dtype=np.int64)
        renumbered[kept] = np.arange(kept.size)
        listed = ~new[terms.pair_bundle_rows]
        terms = replace(
            terms,
            pair_bundle_rows=renumbered[terms.pair_bundle_rows[listed]].astype(np.int32),
            pair_item_columns=terms.pair_item_columns[listed],
        )
    stripped = replace(
        artifact,
        bundle_ids=tuple(artifact.bundle_ids[row] for row in kept),
        bundle_vectors=artifact.bundle_vectors[kept],
        item_terms=terms,
    )
    return stripped, contents


def summary(per_seed: dict[int, dict[str, Figures]]) -> dict[str, object]:
    """Mean and population standard deviation over seeds of each variant's test metrics."""
    out: dict[str, object] = {}
    for variant in ("model_alone", "chosen_by_recall", "chosen_by_ndcg"):
        tests = [per_seed[seed][variant]["test"] for seed in per_seed]
        out[variant] = {
            **{name: mean(t[name] for t in tests) for name in ("recall@20", "ndcg@20")},
            **{f"{name}_std": pstdev(t[name] for t in tests) for name in ("recall@20", "ndcg@20")},
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.ranker.offline.youshu_item_overlap", description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--members", type=int, default=2, help="members per run, as make eval trained them")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--split", choices=sorted(GRIDS), default="standard")
    parser.add_argument("--output", type=Path, help="default: benchmarks/results/youshu_item_overlap[_cold].json")
    parser.add_argument("--publish", action="store_true", help="serve the first seed's model (see above)")
    args = parser.parse_args(argv)
    if args.publish and args.split != "standard":
        parser.error("--publish serves the standard split's model: the cold split trains on fewer bundles")
    output: Path = args.output or RESULTS_FILES[args.split]
    torch.set_num_threads(args.threads)
    settings = OfflineSettings()
    started = time.perf_counter()
    data = youshu_data(load_youshu(settings.data_dir, args.split))
    overlap, related = item_terms(data)
    terms_seconds = time.perf_counter() - started
    per_seed: dict[int, dict[str, Figures]] = {}
    served = None
    for seed in args.seeds:
        seed_started = time.perf_counter()
        runs = settings.runs_dir / f"youshu-{args.split}"
        models = trained_members(data, runs / f"crossview-seed{seed}", seed, args.members)
        members = [model.scorer() for model in models]
        per_seed[seed] = measure_seed(data, overlap, related, members, GRIDS[args.split])
        print(f"seed {seed}: {json.dumps(per_seed[seed])}", flush=True)
        trained = RunResult.read(runs / f"crossview-seed{seed}" / RESULT_FILE)
        seconds = time.perf_counter() - seed_started + terms_seconds
        run = served_run_result(data, members, (overlap, related), per_seed[seed], trained, seconds, GRIDS[args.split])
        run.write(runs / f"{SERVED_MODEL_NAME}-seed{seed}")
        if served is None:
            served = serve_choice(data, models, per_seed[seed], settings, args.publish)
            print(f"served model, seed {seed}: {json.dumps(served)}", flush=True)
    results = {
        "dataset": "youshu",
        "split": args.split,
        "served": served,
        "grids": asdict(GRIDS[args.split]),
        "seeds": per_seed,
        "mean": summary(per_seed),
        "minutes": (time.perf_counter() - started) / 60.0,
        "provenance": run_metadata("services.ranker.offline.youshu_item_overlap", list(argv) if argv else None),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["mean"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
