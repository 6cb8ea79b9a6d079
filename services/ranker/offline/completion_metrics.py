"""Completion metrics: Recall@K and NDCG@K per query, top-K lists, beyond-accuracy measures, and a
paired bootstrap over queries.

Ranking follows :mod:`~services.ranker.offline.metrics`: the query's given items are masked, ranks
come from comparing scores (an equal score ranks the lower item index first), and with one hidden
item Recall@K is 1 when it ranks in the top K and NDCG@K is ``1 / log2(rank + 2)`` then, 0 else.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from services.ranker.offline.completion_data import CompletionQuery
from services.ranker.offline.metrics import positive_ranks, recall_ndcg_per_row

COMPLETION_KS: tuple[int, ...] = (5, 10, 20)
BEYOND_K = 20

FloatArray = npt.NDArray[np.float32]
DoubleArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _masked_rows(queries: Sequence[CompletionQuery]) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.tensor([row for row, query in enumerate(queries) for _ in query.given], dtype=torch.int64)
    items = torch.tensor([item for query in queries for item in query.given], dtype=torch.int64)
    return rows, items


def per_query_metrics(
    scores: FloatArray, queries: Sequence[CompletionQuery], ks: Sequence[int] = COMPLETION_KS
) -> dict[str, DoubleArray]:
    """``recall@K`` and ``ndcg@K`` of every query, float64 [len(queries)], from ``scores``
    [len(queries), n_items] with the given items masked."""
    masked_rows, masked_items = _masked_rows(queries)
    rows = torch.arange(len(queries), dtype=torch.int64)
    hidden = torch.tensor([query.hidden for query in queries], dtype=torch.int64)
    ranks = positive_ranks(torch.from_numpy(scores), rows, hidden, masked_rows, masked_items)
    per_row = recall_ndcg_per_row(ranks, rows, len(queries), ks)
    return {name: values.numpy() for name, values in per_row.items()}


def top_items(scores: FloatArray, queries: Sequence[CompletionQuery], k: int = BEYOND_K) -> IntArray:
    """int64 [len(queries), k]: each query's k best items, given items excluded, ties to the lower index."""
    masked = scores.astype(np.float64, copy=True)
    for row, query in enumerate(queries):
        masked[row, list(query.given)] = -np.inf
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    return order.astype(np.int64)


def popularity_percentiles(popularity: FloatArray) -> DoubleArray:
    """Each item's popularity as the fraction of items strictly less popular plus half the tied
    ones (0 = least popular, near 1 = most)."""
    n = popularity.size
    order = np.sort(popularity)
    below = np.searchsorted(order, popularity, side="left")
    not_above = np.searchsorted(order, popularity, side="right")
    return ((below + (not_above - below - 1) / 2.0) / max(n - 1, 1)).astype(np.float64)


def beyond_accuracy(
    top: IntArray, vectors: FloatArray, categories: Sequence[str], popularity: FloatArray
) -> dict[str, float]:
    """Over the top-K lists ``top`` [Q, K]:

    - ``coverage``: distinct recommended items / all candidates;
    - ``diversity``: mean over lists of the mean pairwise cosine distance (1 - cosine) of the
      items' frozen title ``vectors``;
    - ``distinct_categories``: mean number of distinct non-empty ``categories`` per list;
    - ``popularity_percentile``: mean popularity percentile (:func:`popularity_percentiles`) of
      recommended items; the catalog's own mean is 0.5, higher means a lean to popular items.
    """
    n_queries, k = top.shape
    distances = []
    for row in top:
        chosen = vectors[row]
        cosine = chosen @ chosen.T
        distances.append(float((1.0 - cosine)[np.triu_indices(k, 1)].mean()) if k > 1 else 0.0)
    percentile = popularity_percentiles(popularity)
    return {
        "coverage": float(np.unique(top).size / vectors.shape[0]),
        "diversity": float(np.mean(distances)) if n_queries else 0.0,
        "distinct_categories": float(np.mean([len({categories[i] for i in row if categories[i]}) for row in top])),
        "popularity_percentile": float(percentile[top].mean()) if n_queries else 0.0,
    }


def paired_bootstrap_relative_gain(
    main: Sequence[DoubleArray], baseline: Sequence[DoubleArray], resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Relative gain of the mean of ``main`` over the mean of ``baseline`` with a 95% percentile
    interval, from a paired bootstrap stratified by split seed.

    ``main[s]`` and ``baseline[s]`` hold one value per test query of split seed ``s`` (paired: the
    same queries in the same order). Each resample draws, within every seed, that seed's queries
    with replacement, and takes the gain mean_s(mean main) / mean_s(mean baseline) - 1.

    Raises:
        ValueError: the two sides have different seeds or query counts.
    """
    if len(main) != len(baseline) or any(m.shape != b.shape for m, b in zip(main, baseline, strict=True)):
        raise ValueError("main and baseline must hold the same queries of the same seeds")
    rng = np.random.default_rng(seed)
    point = float(np.mean([m.mean() for m in main]) / np.mean([b.mean() for b in baseline]) - 1.0)
    gains = np.empty(resamples, dtype=np.float64)
    for r in range(resamples):
        main_means, base_means = [], []
        for m, b in zip(main, baseline, strict=True):
            pick = rng.integers(0, m.size, m.size)
            main_means.append(m[pick].mean())
            base_means.append(b[pick].mean())
        base = float(np.mean(base_means))
        gains[r] = np.mean(main_means) / base - 1.0 if base > 0 else np.inf
    low, high = np.percentile(gains, [2.5, 97.5])
    return {"relative_gain": point, "ci95_low": float(low), "ci95_high": float(high), "resamples": float(resamples)}
