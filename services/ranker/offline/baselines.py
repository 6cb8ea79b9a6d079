"""Scorers that need no gradient training: most popular, item co-occurrence and ItemKNN.

They run in the same evaluation harness as the trained models, so their figures check the harness
against what such baselines are known to reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from services.ranker.offline.data import BundleRecData


class PopularityScorer:
    """Every user gets the bundles with the most training users first (ties: lower bundle id)."""

    def __init__(self, data: BundleRecData) -> None:
        self.bundle_counts = data.training_pairs_per_bundle().to(torch.float32)

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.bundle_counts.expand(users.numel(), -1)


@dataclass(frozen=True)
class ItemScorerConfig:
    """``neighbours`` 0 scores a bundle from the user's own items (co-occurrence through B-I); above
    0, each of the user's items also votes for its ``neighbours`` most similar items (ItemKNN, cosine
    over the users and bundles that hold both). A bundle's score is divided by its size raised to
    ``size_exponent``. ``bundle_item_weight`` weighs the items of the user's training bundles against
    the user's own U-I items."""

    neighbours: int = 0
    size_exponent: float = 0.5
    bundle_item_weight: float = 1.0


class ItemScorer:
    """Scores a bundle by how much the user's items (U-I plus the items of the user's training
    bundles) overlap with, or neighbour, the bundle's items (B-I).

    score(u, b) = profile(u) . S . BI(b) / |b|^size_exponent, where profile(u) counts each item over
    U-I (weight 1) and the user's training bundles (``bundle_item_weight`` per bundle), and S is the
    identity or the top-``neighbours`` cosine item-item similarity.
    """

    def __init__(self, data: BundleRecData, config: ItemScorerConfig) -> None:
        self.config = config
        user_item = _scipy(data.user_item_pairs, data.n_users, data.n_items)
        bundle_item = _scipy(data.bundle_item_pairs, data.n_bundles, data.n_items)
        user_bundle = _scipy(data.train_pairs, data.n_users, data.n_bundles)
        self._profile = (user_item + config.bundle_item_weight * (user_bundle @ bundle_item)).tocsr()
        self._similarity = (
            _top_cosine_neighbours(sp.vstack([user_item, bundle_item]).tocsc(), config.neighbours)
            if config.neighbours > 0
            else None
        )
        sizes = np.asarray(bundle_item.sum(axis=1)).ravel()
        scale = 1.0 / np.power(np.maximum(sizes, 1.0), config.size_exponent)
        self._bundles_of_item = (bundle_item.T @ sp.diags(scale)).tocsr()

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        profile = self._profile[users.numpy()]
        if self._similarity is not None:
            profile = profile @ self._similarity
        return torch.from_numpy((profile @ self._bundles_of_item).toarray().astype(np.float32))


def _scipy(pairs: torch.Tensor, n_rows: int, n_cols: int) -> sp.csr_matrix:
    values = np.ones(pairs.shape[0], dtype=np.float64)
    return sp.csr_matrix((values, (pairs[:, 0].numpy(), pairs[:, 1].numpy())), shape=(n_rows, n_cols))


def _top_cosine_neighbours(occurrences: sp.csc_matrix, neighbours: int) -> sp.csr_matrix:
    """Item-item cosine similarity over ``occurrences`` [contexts, items], each row keeping its
    ``neighbours`` largest entries; the diagonal (an item with itself) is kept at 1."""
    norms = np.sqrt(np.asarray(occurrences.multiply(occurrences).sum(axis=0)).ravel())
    inverse = sp.diags(1.0 / np.maximum(norms, 1e-12))
    normalized = (occurrences @ inverse).tocsc()
    similarity = (normalized.T @ normalized).tocsr()
    similarity.setdiag(0.0)
    similarity.eliminate_zeros()
    rows, cols, values = [], [], []
    for item in range(similarity.shape[0]):
        start, end = similarity.indptr[item], similarity.indptr[item + 1]
        if end - start > neighbours:
            keep = np.argpartition(-similarity.data[start:end], neighbours - 1)[:neighbours] + start
        else:
            keep = np.arange(start, end)
        rows.append(np.full(keep.size, item))
        cols.append(similarity.indices[keep])
        values.append(similarity.data[keep])
    n_items = similarity.shape[0]
    pruned = sp.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items)
    )
    return (pruned + sp.identity(n_items, format="csr")).tocsr()
