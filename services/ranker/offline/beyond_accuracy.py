"""What a model's top-K lists look like beyond accuracy: catalog coverage, popularity bias and the
diversity of the bundles in one list.

Lists are the top K bundles of every user of a held-out split with the user's training pairs
masked, exactly as :func:`~services.ranker.offline.evaluation.evaluate` ranks them:
- ``coverage@K``: distinct bundles in any list / all bundles;
- ``popularity_percentile@K``: mean, over every recommended slot, of the bundle's percentile among
  all bundles by training pairs (0 the least bought, 1 the most; ties share the middle), so a
  model that only recommends best-sellers scores near 1;
- ``diversity@K``: mean over users of the mean Jaccard distance between the item sets of two
  bundles of the list (1: no item shared).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from numpy.typing import NDArray

from services.ranker.offline.data import BundleRecData, HeldOutSplit
from services.ranker.offline.evaluation import BundleScorer


def beyond_accuracy(
    scorer: BundleScorer, data: BundleRecData, split: HeldOutSplit, k: int = 20, chunk_size: int = 512
) -> dict[str, float]:
    """``coverage@k``, ``popularity_percentile@k`` and ``diversity@k`` of ``scorer``'s lists.

    Raises:
        ValueError: ``split`` has no user, or ``k`` is not in ``[2, n_bundles]``.
    """
    if split.n_users == 0:
        raise ValueError(f"held-out split {split.name!r} has no user")
    if not 2 <= k <= data.n_bundles:
        raise ValueError(f"k must lie in [2, {data.n_bundles}] (pairs of bundles per list), not {k}")
    percentile = _popularity_percentile(data)
    shared_items, sizes = _shared_items(data)
    recommended = torch.zeros(data.n_bundles, dtype=torch.bool)
    percentile_sum = diversity_sum = 0.0
    upper = torch.triu_indices(k, k, offset=1)
    with torch.no_grad():
        for start in range(0, split.n_users, chunk_size):
            end = min(start + chunk_size, split.n_users)
            scores = scorer.score_users(split.users[start:end]).clone()
            in_chunk = (split.excluded_rows >= start) & (split.excluded_rows < end)
            scores[split.excluded_rows[in_chunk] - start, split.excluded_bundles[in_chunk]] = -torch.inf
            top = scores.topk(k, dim=1).indices
            recommended[top.reshape(-1)] = True
            percentile_sum += float(percentile[top].sum())
            first, second = top[:, upper[0]], top[:, upper[1]]
            shared = torch.from_numpy(shared_items[first.numpy(), second.numpy()]).to(torch.float32)
            union = sizes[first] + sizes[second] - shared
            jaccard = torch.where(union > 0, shared / union.clamp(min=1.0), torch.zeros_like(shared))
            diversity_sum += float((1.0 - jaccard).mean(dim=1).sum())
    return {
        f"coverage@{k}": float(recommended.sum()) / data.n_bundles,
        f"popularity_percentile@{k}": percentile_sum / (split.n_users * k),
        f"diversity@{k}": diversity_sum / split.n_users,
    }


def _popularity_percentile(data: BundleRecData) -> torch.Tensor:
    """[n_bundles] float: the share of bundles with fewer training pairs plus half the share with as
    many (the bundle itself included), so it lies in (0, 1)."""
    counts = data.training_pairs_per_bundle()
    ordered = torch.sort(counts).values
    below = torch.searchsorted(ordered, counts, right=False).to(torch.float64)
    up_to = torch.searchsorted(ordered, counts, right=True).to(torch.float64)
    return ((below + up_to) / (2 * data.n_bundles)).to(torch.float32)


def _shared_items(data: BundleRecData) -> tuple[NDArray[np.float32], torch.Tensor]:
    """Dense [n_bundles, n_bundles] counts of items two bundles share (numpy), and bundle sizes."""
    pairs = data.bundle_item_pairs.numpy()
    membership = sp.csr_matrix(
        ([1.0] * len(pairs), (pairs[:, 0], pairs[:, 1])), shape=(data.n_bundles, data.n_items), dtype="float32"
    )
    shared = (membership @ membership.T).toarray()
    sizes = torch.from_numpy(np.asarray(membership.sum(axis=1), dtype=np.float32).reshape(-1))
    return np.asarray(shared, dtype=np.float32), sizes
