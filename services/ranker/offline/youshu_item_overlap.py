"""``python -m services.ranker.offline.youshu_item_overlap``: what two exact item-level terms add to
the trained Youshu cross-view members, measured by the papers' protocol, and the model the ranker
serves with them.

The cross-view model sees a shopper's items and bundles only through 64-d propagated vectors. This
experiment adds to its score (members summed, as in ``make eval``) two counts the vectors blur
(``services.ranker.item_terms``, the code the ranker scores them with):

- **item overlap**: the bundle's items the shopper has interacted with (``user_item``, which the
  protocol gives every model), over sqrt(|items(u)| * |items(b)|);
- **related bundles**: how much the bundle shares items with the shopper's training bundles, the sum
  over those of |items(b') ∩ items(b)| / sqrt(|items(b')| * |items(b)|), over sqrt(their number).

    score(u, b) = a * bundle view + (2 - a) * item view + w * item overlap + v * related bundles
                  + p * log(1 + training pairs of b)

``a``, ``w``, ``v`` and ``p`` (and on the cold split a new-bundle boost ``n``) are chosen together on
tune from fixed grids (:data:`GRIDS`), per seed, once by tune Recall@20 and once by tune NDCG@20
(both reported); nothing is retrained (the members of ``make eval``'s run folders are loaded).
Results: ``benchmarks/results/youshu_item_overlap.json`` (``--split cold``:
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
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from statistics import mean, pstdev
from typing import TypedDict

import numpy as np
import numpy.typing as npt
import torch

from benchmarks.provenance import run_metadata
from services.ranker.item_terms import BundleContents, ItemTermWeights
from services.ranker.models import ServedModel, load_served
from services.ranker.offline.beyond_accuracy import beyond_accuracy
from services.ranker.offline.data import BundleRecData, youshu_data
from services.ranker.offline.evaluation import EmbeddingScorer, RankingReport, evaluate
from services.ranker.offline.publish import YOUSHU_CATALOG, publish_artifact, youshu_artifact, youshu_item_terms
from services.ranker.offline.results import RESULT_FILE, RunResult
from services.ranker.offline.train_youshu import (
    MEMBER_SEED_STRIDE,
    POPULARITY_WEIGHTS,
    OfflineSettings,
    build_model,
    build_parser,
)
from services.ranker.offline.training import load_best
from shared.datasets import load_youshu
from shared.store.migrate import make_engine
from shared.store.model_registry import ModelVersion, save_artifact

REPO_ROOT = Path(__file__).resolve().parents[3]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
RESULTS_FILES = {
    "standard": RESULTS_DIR / "youshu_item_overlap.json",
    "cold": RESULTS_DIR / "youshu_item_overlap_cold.json",
}


@dataclass(frozen=True)
class Grid:
    """The values tried for each weight of the score; every combination is evaluated on tune."""

    bundle_view_share: tuple[float, ...]
    """``a``: the bundle view's share of the two views' sum (1.0: as trained)."""
    overlap_weight: tuple[float, ...]
    """``w``: the item-overlap term's weight (0: without it)."""
    related_weight: tuple[float, ...]
    """``v``: the related-bundles term's weight (0: without it)."""
    popularity_weight: tuple[float, ...]
    """``p``: the popularity prior's weight."""
    new_bundle_boost: tuple[float, ...]
    """``n``: what a bundle without training pairs adds (``train_youshu``'s new-bundle boost)."""


GRIDS = {
    # make eval's popularity weights and one more; the standard split's test has almost no new bundle.
    "standard": Grid(
        (1.0, 0.7, 0.5), (0.0, 1.0, 2.0, 4.0, 8.0), (0.0, 0.5, 1.0, 2.0, 3.0), (*POPULARITY_WEIGHTS, 1.5), (0.0,)
    ),
    # Every tune and test bundle of the cold split is new, so popularity (0 for each of them) only
    # reorders the warm bundles below, and the boost decides how far new bundles lead. Tune chose the
    # edge of the related weights twice on this split (3, then 6), so they go further than on the
    # standard split.
    "cold": Grid(
        (1.0, 0.7, 0.5),
        (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
        (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0),
        (0.0,),
        (4.0, 8.0, 16.0, 32.0),
    ),
}
SERVED_MODEL_NAME = "crossview_item_terms"


class Figures(TypedDict):
    """One variant of one seed: what it chose on tune, and its tune and test metrics."""

    chosen_on_tune: dict[str, float]
    tune: dict[str, float]
    test: dict[str, float]


@dataclass(frozen=True)
class ItemTermsScorer:
    """A cross-view scorer plus ``overlap_weight * overlap + related_weight * related + prior``."""

    model: EmbeddingScorer
    overlap: torch.Tensor
    overlap_weight: float
    related: torch.Tensor
    related_weight: float
    prior: torch.Tensor

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        scores = self.model.score_users(users) + self.prior
        return scores + self.overlap_weight * self.overlap[users] + self.related_weight * self.related[users]


def _rows_by_user(pairs: torch.Tensor, n_users: int) -> list[npt.NDArray[np.int64]]:
    """Each user's distinct second ids among (user, id) ``pairs``, sorted."""
    ordered = pairs[torch.argsort(pairs[:, 0], stable=True)].numpy()
    bounds = np.searchsorted(ordered[:, 0], np.arange(n_users + 1))
    return [np.unique(ordered[bounds[u] : bounds[u + 1], 1]) for u in range(n_users)]


def item_terms(data: BundleRecData) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n_users, n_bundles]`` item overlap and related bundles of every shopper (``user_item`` and
    their training bundles), computed shopper by shopper as the ranker computes them."""
    pairs = data.bundle_item_pairs.numpy()
    contents = BundleContents(pairs[:, 0], pairs[:, 1], data.n_bundles, data.n_items)
    overlap = np.zeros((data.n_users, data.n_bundles), dtype=np.float32)
    related = np.zeros_like(overlap)
    for user, (items, bought) in enumerate(
        zip(
            _rows_by_user(data.user_item_pairs, data.n_users),
            _rows_by_user(data.train_pairs, data.n_users),
            strict=True,
        )
    ):
        overlap[user] = contents.overlap(items, len(items))
        related[user] = contents.related(bought, len(bought))
    return torch.from_numpy(overlap), torch.from_numpy(related)


def view_weighted(scorer: EmbeddingScorer, bundle_share: float) -> EmbeddingScorer:
    """The cross-view scorer with its bundle view times ``bundle_share`` and its item view times
    ``2 - bundle_share`` (its user vectors are the two views side by side)."""
    users = scorer.user_vectors.clone()
    half = users.shape[1] // 2
    users[:, :half] *= bundle_share
    users[:, half:] *= 2.0 - bundle_share
    return EmbeddingScorer(users, scorer.bundle_vectors)


def trained_members(data: BundleRecData, run_dir: Path, seed: int, members: int) -> list[EmbeddingScorer]:
    """The best-on-tune members of ``make eval``'s cross-view run of ``seed``."""
    args = build_parser().parse_args(["--model", "crossview", "--seed", str(seed)])
    scorers = []
    for member in range(members):
        model = build_model(args, data, seed + MEMBER_SEED_STRIDE * member)
        load_best(model, run_dir / f"member{member}" if members > 1 else run_dir)
        scorers.append(model.scorer())
    return scorers


def measure_seed(
    data: BundleRecData,
    overlap: torch.Tensor,
    related: torch.Tensor,
    members: Sequence[EmbeddingScorer],
    grid: Grid = GRIDS["standard"],
) -> dict[str, Figures]:
    """The model alone (``a`` = 1, ``w`` = ``v`` = 0, priors chosen by tune Recall@20), and with the
    terms, chosen by tune Recall@20 and by tune NDCG@20: each with its choice, tune and test metrics."""
    popularity = data.popularity_prior()
    new = (data.training_pairs_per_bundle() == 0).to(torch.float32)
    candidates: list[tuple[dict[str, float], dict[str, float], ItemTermsScorer]] = []
    for share in grid.bundle_view_share:
        model = EmbeddingScorer.summed([view_weighted(member, share) for member in members])
        for weight, related_weight, prior, boost in itertools.product(
            grid.overlap_weight, grid.related_weight, grid.popularity_weight, grid.new_bundle_boost
        ):
            scorer = ItemTermsScorer(model, overlap, weight, related, related_weight, prior * popularity + boost * new)
            choice = {
                "bundle_view_share": share,
                "overlap_weight": weight,
                "related_weight": related_weight,
                "popularity_weight": prior,
                "new_bundle_boost": boost,
            }
            candidates.append((evaluate(scorer, data.tune).metrics, choice, scorer))
    alone = [
        c
        for c in candidates
        if (c[1]["bundle_view_share"], c[1]["overlap_weight"], c[1]["related_weight"]) == (1.0, 0.0, 0.0)
        and c[1]["popularity_weight"] in POPULARITY_WEIGHTS
    ]
    return {
        "model_alone": _figures(data, max(alone, key=lambda c: c[0]["recall@20"])),
        "chosen_by_recall": _figures(data, max(candidates, key=lambda c: c[0]["recall@20"])),
        "chosen_by_ndcg": _figures(data, max(candidates, key=lambda c: c[0]["ndcg@20"])),
    }


def served_model(
    data: BundleRecData, members: Sequence[EmbeddingScorer], choice: dict[str, float]
) -> tuple[EmbeddingScorer, ItemTermWeights]:
    """The choice of :func:`measure_seed` as the ranker serves it: one dot-product scorer (view share
    and popularity prior folded into its vectors) and the weights of the item-level terms."""
    model = EmbeddingScorer.summed([view_weighted(member, choice["bundle_view_share"]) for member in members])
    new = (data.training_pairs_per_bundle() == 0).to(torch.float32)
    prior = choice["popularity_weight"] * data.popularity_prior() + choice["new_bundle_boost"] * new
    scorer = model.with_bundle_prior(prior, 1.0)
    return scorer, ItemTermWeights(overlap=choice["overlap_weight"], related=choice["related_weight"])


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
    members: Sequence[EmbeddingScorer],
    figures: dict[str, Figures],
    settings: OfflineSettings,
    publish: bool,
) -> dict[str, object]:
    """Saves the ``chosen_by_ndcg`` model of one seed's ``figures`` as the ranker's artifact, loads it
    back as a ranker does and measures its test Recall@20 through the ranker's own scoring, which
    must equal the harness's. With ``publish``, the artifact goes to ``$BUNDLEWISE_MODEL_DIR`` and is
    recorded as the ``youshu`` catalog's newest version; without, to a temporary folder."""
    if publish and settings.postgres_url is None:
        raise SystemExit("--publish needs BUNDLEWISE_POSTGRES_URL: the model's version is recorded there")
    chosen = figures["chosen_by_ndcg"]
    choice = chosen["chosen_on_tune"]
    scorer, weights = served_model(data, members, choice)
    metrics = {f"test_{name}": value for name, value in chosen["test"].items()}
    artifact = youshu_artifact(scorer, SERVED_MODEL_NAME, metrics, youshu_item_terms(data, weights))
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
    return {
        "published": f"{version.label}: {path}" if publish else "no (--publish records it)",
        "chosen_on_tune": choice,
        "test_recall@20_harness": chosen["test"]["recall@20"],
        "test_recall@20_ranker_scoring": ranker_recall,
    }


def ranker_test_recall(model: ServedModel, data: BundleRecData, k: int = 20) -> float:
    """Test Recall@K of ``model`` scored as the ranker scores a request: by shopper id, with the
    shopper's items and training bundles as the feature store holds them (``u<row>``, ``i<row>``,
    ``b<row>``), the bundles bought left out."""
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
        owned = bought.get(user, set())
        top = model.top_bundles(f"u{user}", k, exclude=owned, item_ids=items.get(user, []), bought_bundle_ids=owned)
        recalls.append(len({bundle for bundle, _ in top} & positives[row]) / len(positives[row]))
    return mean(recalls)


def _figures(data: BundleRecData, candidate: tuple[dict[str, float], dict[str, float], ItemTermsScorer]) -> Figures:
    tune, choice, scorer = candidate
    test: RankingReport = evaluate(scorer, data.test)
    return {"chosen_on_tune": choice, "tune": tune, "test": test.metrics}


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
        members = trained_members(data, runs / f"crossview-seed{seed}", seed, args.members)
        per_seed[seed] = measure_seed(data, overlap, related, members, GRIDS[args.split])
        print(f"seed {seed}: {json.dumps(per_seed[seed])}", flush=True)
        trained = RunResult.read(runs / f"crossview-seed{seed}" / RESULT_FILE)
        seconds = time.perf_counter() - seed_started + terms_seconds
        run = served_run_result(data, members, (overlap, related), per_seed[seed], trained, seconds, GRIDS[args.split])
        run.write(runs / f"{SERVED_MODEL_NAME}-seed{seed}")
        if served is None:
            served = serve_choice(data, members, per_seed[seed], settings, args.publish)
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
