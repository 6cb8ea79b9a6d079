"""Recall@K and NDCG@K for full ranking, as the bundle-recommendation papers define them.

For one user with ``P`` held-out positives and the positions (0-based ranks) they reach:
Recall@K = (positives ranked below K) / P, the denominator is P, not min(P, K);
NDCG@K = DCG@K / IDCG@K with binary gains, DCG@K = sum over positives with rank < K of
1 / log2(rank + 2), and IDCG@K the same sum for ranks 0 .. min(P, K) - 1.

Ranks come from comparing scores, not from sorting, so they are exact and deterministic: a bundle
outranks a positive when it scores higher, or scores the same and has a lower bundle id (what a
stable descending sort does). Masked (excluded) bundles rank below every other bundle.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

DEFAULT_KS: tuple[int, ...] = (10, 20, 40, 80)


def positive_ranks(
    scores: torch.Tensor,
    positive_rows: torch.Tensor,
    positive_bundles: torch.Tensor,
    excluded_rows: torch.Tensor,
    excluded_bundles: torch.Tensor,
) -> torch.Tensor:
    """The 0-based rank of every positive (row, bundle) in its row of ``scores``.

    ``scores`` is [n_rows, n_bundles], higher is better, and must hold no NaN. The (row, bundle)
    pairs in ``excluded_*`` (the training pairs) are masked first: they rank below every unmasked
    bundle, and a positive that is itself excluded gets rank ``n_bundles``, so it is never a hit
    (it still counts in its user's number of positives). Returns int64 [len(positive_rows)].
    """
    n_rows, n_bundles = scores.shape
    excluded = torch.zeros(n_rows, n_bundles, dtype=torch.bool, device=scores.device)
    excluded[excluded_rows, excluded_bundles] = True
    masked = scores.masked_fill(excluded, float("-inf"))
    positive_scores = masked[positive_rows, positive_bundles].unsqueeze(1)
    row_scores = masked[positive_rows]
    bundle_ids = torch.arange(n_bundles, device=scores.device).unsqueeze(0)
    higher = (row_scores > positive_scores).sum(dim=1)
    tied_before = ((row_scores == positive_scores) & (bundle_ids < positive_bundles.unsqueeze(1))).sum(dim=1)
    ranks = higher + tied_before
    return torch.where(excluded[positive_rows, positive_bundles], n_bundles, ranks)


def recall_ndcg_per_row(
    ranks: torch.Tensor, positive_rows: torch.Tensor, n_rows: int, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, torch.Tensor]:
    """Recall@K and NDCG@K of every row, from its positives' ranks.

    Returns float64 [n_rows] tensors named ``recall@K`` and ``ndcg@K`` for each K in ``ks``; a row
    with no positive gets NaN (the papers leave such users out of the average).
    """
    positives = torch.bincount(positive_rows, minlength=n_rows).to(torch.float64)
    no_positive = positives == 0
    per_row: dict[str, torch.Tensor] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"K must be at least 1, got {k}")
        hit = (ranks < k).to(torch.float64)
        hits = torch.zeros(n_rows, dtype=torch.float64).index_add_(0, positive_rows, hit)
        gains = hit / torch.log2(ranks.to(torch.float64) + 2.0)
        dcg = torch.zeros(n_rows, dtype=torch.float64).index_add_(0, positive_rows, gains)
        ideal_gains = 1.0 / torch.log2(torch.arange(k, dtype=torch.float64) + 2.0)
        ideal_dcg_by_count = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(ideal_gains, dim=0)])
        ideal_dcg = ideal_dcg_by_count[positives.clamp(max=k).to(torch.int64)]
        per_row[f"recall@{k}"] = torch.where(no_positive, torch.nan, hits / positives.clamp(min=1))
        per_row[f"ndcg@{k}"] = torch.where(no_positive, torch.nan, dcg / ideal_dcg.clamp(min=1e-12))
    return per_row


def mean_over_rows_with_positives(per_row: dict[str, torch.Tensor]) -> dict[str, float]:
    """Each metric averaged over the rows that are not NaN (users with at least one positive)."""
    return {name: float(values.nanmean()) for name, values in per_row.items()}
