"""The Youshu main model's parts: two exact item-level terms added to the trained cross-view members,
their weights chosen on tune, and the model the ranker serves from that choice.

The cross-view model sees a shopper's items and bundles only through 64-d propagated vectors. Two
counts the vectors blur (``services.ranker.item_terms``, the code the ranker scores them with) are
added to its score (members summed, as in ``make eval``):

- **item overlap**: the bundle's items the shopper has interacted with (``user_item``, which the
  protocol gives every model), over sqrt(|items(u)| * |items(b)|);
- **related bundles**: how much the bundle shares items with the shopper's training bundles, the sum
  over those of |items(b') ∩ items(b)| / sqrt(|items(b')| * |items(b)|), over sqrt(their number).

    score(u, b) = a * bundle view + (2 - a) * item view + w * item overlap + v * related bundles
                  + p * log(1 + training pairs of b) + n * (b has no training pair)

The command that runs it is ``services.ranker.offline.youshu_item_overlap``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import numpy.typing as npt
import torch

from services.ranker.item_terms import BundleContents, ItemTermWeights
from services.ranker.offline.data import BundleRecData
from services.ranker.offline.evaluation import EmbeddingScorer, RankingReport, evaluate
from services.ranker.offline.models import CrossViewModel
from services.ranker.offline.train_youshu import MEMBER_SEED_STRIDE, POPULARITY_WEIGHTS, build_model, build_parser
from services.ranker.offline.training import load_best
from shared.store.model_registry import NewBundleVectors


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


def trained_members(data: BundleRecData, run_dir: Path, seed: int, members: int) -> list[CrossViewModel]:
    """The best-on-tune members of ``make eval``'s cross-view run of ``seed``."""
    args = build_parser().parse_args(["--model", "crossview", "--seed", str(seed)])
    models = []
    for member in range(members):
        model = build_model(args, data, seed + MEMBER_SEED_STRIDE * member)
        load_best(model, run_dir / f"member{member}" if members > 1 else run_dir)
        if not isinstance(model, CrossViewModel):
            raise TypeError(f"{run_dir} holds a {type(model).__name__}, not the cross-view members")
        models.append(model)
    return models


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


def new_bundle_vectors(members: Sequence[CrossViewModel], choice: dict[str, float]) -> NewBundleVectors:
    """How :func:`served_model`'s vectors score a bundle synced after training: as the members score
    a bundle without training pairs (its items' item-view mean, that direction at the least-known
    bundles' length in the bundle view), with the new-bundle boost as its prior."""
    bases = [member.new_bundle_basis() for member in members]
    return NewBundleVectors(
        item_vectors=torch.cat([items for items, _ in bases], dim=1).numpy(),
        bundle_view_lengths=tuple(length for _, length in bases),
        prior=choice["new_bundle_boost"],
    )


def _figures(data: BundleRecData, candidate: tuple[dict[str, float], dict[str, float], ItemTermsScorer]) -> Figures:
    tune, choice, scorer = candidate
    test: RankingReport = evaluate(scorer, data.test)
    return {"chosen_on_tune": choice, "tune": tune, "test": test.metrics}
