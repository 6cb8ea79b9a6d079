"""The papers' evaluation protocol: rank every bundle for every held-out user, training pairs masked.

Recall@K and NDCG@K (see :mod:`~services.ranker.offline.metrics`) are averaged over the users with
at least one pair in the evaluated split. When testing, only the training pairs are masked, not the
tune pairs (as in CrossCBR's code). Users are scored in chunks so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from services.ranker.offline.data import HeldOutSplit
from services.ranker.offline.metrics import DEFAULT_KS, positive_ranks, recall_ndcg_per_row


class BundleScorer(Protocol):
    """Anything that scores every bundle for a batch of users."""

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [len(users), n_bundles] for int64 user ids ``users``; higher ranks first, no NaN."""
        ...


@dataclass(frozen=True)
class EmbeddingScorer:
    """Scores a user-bundle pair as the dot product of their vectors ([n_users, D], [n_bundles, D])."""

    user_vectors: torch.Tensor
    bundle_vectors: torch.Tensor

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_vectors[users] @ self.bundle_vectors.T

    def with_bundle_prior(self, prior: torch.Tensor, weight: float) -> EmbeddingScorer:
        """Adds ``weight * prior[bundle]`` ([n_bundles]) to every score, as one more vector column
        (``weight`` for every user, the prior for every bundle), so serving stays a dot product."""
        users = torch.full((self.user_vectors.shape[0], 1), float(weight), dtype=self.user_vectors.dtype)
        bundles = prior.to(self.bundle_vectors.dtype).reshape(-1, 1)
        return EmbeddingScorer(
            torch.cat([self.user_vectors, users], dim=1), torch.cat([self.bundle_vectors, bundles], dim=1)
        )

    @classmethod
    def summed(cls, scorers: Sequence[EmbeddingScorer]) -> EmbeddingScorer:
        """One scorer whose score is the sum of ``scorers``' scores: side-by-side vectors, so an
        ensemble is served like any single model."""
        if not scorers:
            raise ValueError("no scorer to sum")
        if len(scorers) == 1:
            return scorers[0]
        return cls(
            torch.cat([scorer.user_vectors for scorer in scorers], dim=1),
            torch.cat([scorer.bundle_vectors for scorer in scorers], dim=1),
        )


@dataclass(frozen=True)
class RankingReport:
    """Mean metrics of one evaluation: ``metrics["recall@20"]`` etc., over ``n_users`` users."""

    split: str
    n_users: int
    metrics: dict[str, float]

    def headline(self) -> str:
        """``recall@20=0.2791 ndcg@20=0.1642`` (or every metric when K=20 was not computed)."""
        names: list[str] = [name for name in ("recall@20", "ndcg@20") if name in self.metrics]
        names = names or sorted(self.metrics)
        return " ".join(f"{name}={self.metrics[name]:.4f}" for name in names)


def evaluate(
    scorer: BundleScorer,
    split: HeldOutSplit,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int = 256,
) -> RankingReport:
    """Ranks all bundles for every user of ``split`` and averages Recall@K and NDCG@K over them.

    Raises:
        ValueError: ``split`` has no user (nothing to average).
    """
    if split.n_users == 0:
        raise ValueError(f"held-out split {split.name!r} has no user with a positive")
    sums = {f"{metric}@{k}": 0.0 for k in ks for metric in ("recall", "ndcg")}
    with torch.no_grad():
        for start in range(0, split.n_users, chunk_size):
            end = min(start + chunk_size, split.n_users)
            positives = _rows_between(split.positive_rows, start, end)
            excluded = _rows_between(split.excluded_rows, start, end)
            scores = scorer.score_users(split.users[start:end])
            ranks = positive_ranks(
                scores,
                split.positive_rows[positives] - start,
                split.positive_bundles[positives],
                split.excluded_rows[excluded] - start,
                split.excluded_bundles[excluded],
            )
            per_row = recall_ndcg_per_row(ranks, split.positive_rows[positives] - start, end - start, ks)
            for name, values in per_row.items():
                sums[name] += float(values.nansum())
    return RankingReport(split.name, split.n_users, {name: total / split.n_users for name, total in sums.items()})


def _rows_between(sorted_rows: torch.Tensor, start: int, end: int) -> slice:
    """The slice of ``sorted_rows`` (ascending) whose values lie in ``[start, end)``."""
    bounds = torch.searchsorted(sorted_rows, torch.tensor([start, end], dtype=sorted_rows.dtype))
    return slice(int(bounds[0]), int(bounds[1]))
