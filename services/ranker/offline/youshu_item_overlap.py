"""``python -m services.ranker.offline.youshu_item_overlap``: what two exact item-level terms add to
the trained Youshu cross-view members, measured by the papers' protocol.

The cross-view model sees a shopper's items and bundles only through 64-d propagated vectors. This
experiment adds to its score (members summed, as in ``make eval``) two counts the vectors blur:

- **item overlap**: the bundle's items the shopper has interacted with (``user_item``, which the
  protocol gives every model), over sqrt(|items(u)| * |items(b)|);
- **related bundles**: how much the bundle shares items with the shopper's training bundles, the sum
  over those of |items(b') ∩ items(b)| / sqrt(|items(b')| * |items(b)|), over sqrt(their number).

    score(u, b) = a * bundle view + (2 - a) * item view + w * item overlap + v * related bundles
                  + p * log(1 + training pairs of b)

``a``, ``w``, ``v`` and ``p`` are chosen together on tune from fixed grids, per seed, once by tune
Recall@20 and once by tune NDCG@20 (both reported); nothing is retrained (the members of ``make
eval``'s run folders are loaded). Neither term is a dot product of fixed vectors, so the ranker's
artifact cannot serve them yet: the figures are offline only. Results:
``benchmarks/results/youshu_item_overlap.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, pstdev

import torch

from benchmarks.provenance import run_metadata
from services.ranker.offline.data import BundleRecData, youshu_data
from services.ranker.offline.evaluation import EmbeddingScorer, RankingReport, evaluate
from services.ranker.offline.train_youshu import (
    MEMBER_SEED_STRIDE,
    POPULARITY_WEIGHTS,
    OfflineSettings,
    build_model,
    build_parser,
)
from services.ranker.offline.training import load_best
from shared.datasets import load_youshu

REPO_ROOT = Path(__file__).resolve().parents[3]
RESULTS_FILE = REPO_ROOT / "benchmarks" / "results" / "youshu_item_overlap.json"
VIEW_WEIGHTS = (1.0, 0.7, 0.5)
"""``a``: the bundle view's share of the two views' sum (1.0: as trained)."""
OVERLAP_WEIGHTS = (0.0, 1.0, 2.0, 4.0, 8.0)
"""``w``: the item-overlap term's weight (0: without it)."""
RELATED_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0)
"""``v``: the related-bundles term's weight (0: without it)."""
PRIOR_WEIGHTS = (*POPULARITY_WEIGHTS, 1.5)
"""``p``: ``make eval``'s popularity weights, and one more."""


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


def _incidence(pairs: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
    """The sparse ``[rows, columns]`` 0/1 matrix of ``pairs`` (row id, column id), duplicates once."""
    ones = torch.ones(pairs.shape[0])
    matrix = torch.sparse_coo_tensor(pairs.T, ones, (rows, columns), check_invariants=True).coalesce()
    # Coalescing sums duplicate pairs; a pair counts once.
    ones = torch.ones_like(matrix.values())
    return torch.sparse_coo_tensor(matrix.indices(), ones, (rows, columns), check_invariants=True).coalesce()


def _product(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """The dense ``left @ right.T`` of two sparse matrices, never holding either densely."""
    with warnings.catch_warnings():
        # torch routes sparse x sparse through its CSR kernels and warns that they are in beta.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        product: torch.Tensor = torch.sparse.mm(left, right.T.coalesce()).to_dense()
    return product


def _sizes(incidence: torch.Tensor) -> torch.Tensor:
    """Entries per row of a sparse incidence matrix, at least 1 (for dividing by)."""
    return torch.sparse.sum(incidence, dim=1).to_dense().clamp(min=1.0)


def item_overlap(data: BundleRecData) -> torch.Tensor:
    """``[n_users, n_bundles]``: shared items of the shopper and the bundle over sqrt(|items(u)| * |items(b)|)."""
    user_items = _incidence(data.user_item_pairs, data.n_users, data.n_items)
    bundle_items = _incidence(data.bundle_item_pairs, data.n_bundles, data.n_items)
    shared = _product(user_items, bundle_items)
    overlap: torch.Tensor = shared / _sizes(user_items).sqrt()[:, None] / _sizes(bundle_items).sqrt()[None, :]
    return overlap


def related_bundles(data: BundleRecData) -> torch.Tensor:
    """``[n_users, n_bundles]``: the bundle's item overlap with each of the shopper's training
    bundles (itself excluded), summed, over sqrt(the shopper's number of training bundles)."""
    bundle_items = _incidence(data.bundle_item_pairs, data.n_bundles, data.n_items)
    norms = _sizes(bundle_items).sqrt()
    similarity = _product(bundle_items, bundle_items) / norms[:, None] / norms[None, :]
    similarity.fill_diagonal_(0.0)
    owned = _incidence(data.train_pairs, data.n_users, data.n_bundles)
    related: torch.Tensor = torch.sparse.mm(owned, similarity) / _sizes(owned).sqrt()[:, None]
    return related


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
    data: BundleRecData, overlap: torch.Tensor, related: torch.Tensor, members: Sequence[EmbeddingScorer]
) -> dict[str, object]:
    """The model alone (``a`` = 1, ``w`` = ``v`` = 0, ``p`` chosen by tune Recall@20), and with the
    terms, chosen by tune Recall@20 and by tune NDCG@20: each with its choice, tune and test metrics."""
    pairs = torch.bincount(data.train_pairs[:, 1], minlength=data.n_bundles)
    popularity = torch.log1p(pairs.to(torch.float32))
    candidates: list[tuple[dict[str, float], tuple[float, float, float, float], ItemTermsScorer]] = []
    for share in VIEW_WEIGHTS:
        model = EmbeddingScorer.summed([view_weighted(member, share) for member in members])
        for weight, related_weight, prior in itertools.product(OVERLAP_WEIGHTS, RELATED_WEIGHTS, PRIOR_WEIGHTS):
            scorer = ItemTermsScorer(model, overlap, weight, related, related_weight, prior * popularity)
            candidates.append((evaluate(scorer, data.tune).metrics, (share, weight, related_weight, prior), scorer))
    alone = [c for c in candidates if c[1][:3] == (1.0, 0.0, 0.0) and c[1][3] in POPULARITY_WEIGHTS]
    return {
        "model_alone": _figures(data, max(alone, key=lambda c: c[0]["recall@20"])),
        "chosen_by_recall": _figures(data, max(candidates, key=lambda c: c[0]["recall@20"])),
        "chosen_by_ndcg": _figures(data, max(candidates, key=lambda c: c[0]["ndcg@20"])),
    }


def _figures(
    data: BundleRecData, candidate: tuple[dict[str, float], tuple[float, float, float, float], ItemTermsScorer]
) -> dict[str, object]:
    tune, (share, weight, related_weight, prior), scorer = candidate
    test: RankingReport = evaluate(scorer, data.test)
    return {
        "chosen_on_tune": {
            "bundle_view_share": share,
            "overlap_weight": weight,
            "related_weight": related_weight,
            "popularity_weight": prior,
        },
        "tune": tune,
        "test": test.metrics,
    }


def summary(per_seed: dict[int, dict[str, object]]) -> dict[str, object]:
    """Mean and population standard deviation over seeds of each variant's test metrics."""
    out: dict[str, object] = {}
    for variant in ("model_alone", "chosen_by_recall", "chosen_by_ndcg"):
        tests = [per_seed[seed][variant]["test"] for seed in per_seed]  # type: ignore[index]
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
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = OfflineSettings()
    started = time.perf_counter()
    data = youshu_data(load_youshu(settings.data_dir, "standard"))
    overlap, related = item_overlap(data), related_bundles(data)
    per_seed: dict[int, dict[str, object]] = {}
    for seed in args.seeds:
        run_dir = settings.runs_dir / "youshu-standard" / f"crossview-seed{seed}"
        per_seed[seed] = measure_seed(data, overlap, related, trained_members(data, run_dir, seed, args.members))
        print(f"seed {seed}: {json.dumps(per_seed[seed])}", flush=True)
    results = {
        "dataset": "youshu",
        "split": "standard",
        "served": False,
        "grids": {
            "bundle_view_share": VIEW_WEIGHTS,
            "overlap_weight": OVERLAP_WEIGHTS,
            "related_weight": RELATED_WEIGHTS,
            "popularity_weight": PRIOR_WEIGHTS,
        },
        "seeds": per_seed,
        "mean": summary(per_seed),
        "minutes": (time.perf_counter() - started) / 60.0,
        "provenance": run_metadata("services.ranker.offline.youshu_item_overlap", list(argv) if argv else None),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["mean"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
