"""Signals that score every candidate item for a batch of completion queries, and their linear mix.

Each signal is a float32 array [n_queries, n_items], higher is better:

- :func:`popularity_counts`: in how many training bundles an item occurs;
- :class:`CooccurrenceCounts`: how often an item occurred with the query's given items in training
  bundles (weight 1) and training sessions (weight ``session_weight``), summed over given items;
- :func:`mean_cosine`: the mean cosine between an item's vector and the given items' vectors
  (ItemKNN over text vectors: with one to a few given items, every neighbour counts);
- :func:`scaled_per_query`: a signal divided by its largest value in each query (0 stays 0), so
  counts of different magnitude mix with cosines on one scale.

:func:`fuse` adds signals with weights; :func:`select_weights` picks weights on tune queries.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from services.ranker.offline.completion_data import CompletionBundle, CompletionQuery

FloatArray = npt.NDArray[np.float32]
POPULARITY_TIE_BREAK = 1e-3
"""Weight of scaled popularity added to count signals, so items with equal counts rank by popularity."""


@dataclass(frozen=True)
class DomainVectors:
    """L2-normalised item vectors of one domain, rows in candidate order: ``baseline_titles`` for
    ``text_knn``/``cooc_text_mix`` and the diversity measure, ``main_texts`` for the main method."""

    baseline_titles: FloatArray
    main_texts: FloatArray


def popularity_counts(bundles: Sequence[CompletionBundle], n_items: int) -> FloatArray:
    """float32 [n_items]: the number of ``bundles`` holding each item."""
    counts = np.zeros(n_items, dtype=np.float32)
    for bundle in bundles:
        counts[list(bundle.items)] += 1.0
    return counts


def _pair_matrix(groups: Iterable[Sequence[int]], n_items: int) -> sp.csr_matrix:
    """Item-item counts of the groups each pair shares (zero diagonal)."""
    rows: list[int] = []
    cols: list[int] = []
    for group in groups:
        for first, second in itertools.permutations(group, 2):
            rows.append(first)
            cols.append(second)
    values = np.ones(len(rows), dtype=np.float32)
    return sp.csr_matrix((values, (rows, cols)), shape=(n_items, n_items))


class CooccurrenceCounts:
    """Bundle and session co-occurrence counts of the training split, kept apart so that the session
    weight can be chosen without recounting."""

    def __init__(self, bundles: Sequence[CompletionBundle], sessions: Sequence[Sequence[int]], n_items: int) -> None:
        self.bundle_pairs = _pair_matrix((b.items for b in bundles), n_items)
        self.session_pairs = _pair_matrix(sessions, n_items)

    def scores(self, queries: Sequence[CompletionQuery], session_weight: float) -> FloatArray:
        """float32 [len(queries), n_items]: summed counts with each given item."""
        matrix = (self.bundle_pairs + session_weight * self.session_pairs).tocsr()
        given = _given_matrix(queries, matrix.shape[0])
        return np.asarray((given @ matrix).toarray(), dtype=np.float32)


class CategoryTransitions:
    """How often a bundle that holds an item of category ``a`` also holds one of category ``b``,
    from training bundles: P(b | a) = (item pairs of categories a, b) / (item pairs with an item of
    a). Generalises co-occurrence to items no training bundle holds (a camera's bundle wants a
    battery, whichever battery). Items without a category score 0."""

    def __init__(self, bundles: Sequence[CompletionBundle], categories: Sequence[str]) -> None:
        names = sorted({c for c in categories if c})
        index = {name: position for position, name in enumerate(names)}
        self.item_category = np.array([index.get(c, -1) for c in categories], dtype=np.int64)
        counts = np.zeros((len(names), len(names)), dtype=np.float64)
        for bundle in bundles:
            for first, second in itertools.permutations(bundle.items, 2):
                a, b = self.item_category[first], self.item_category[second]
                if a >= 0 and b >= 0:
                    counts[a, b] += 1.0
        totals = counts.sum(axis=1, keepdims=True)
        self.transitions = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0).astype(np.float32)

    def scores(self, queries: Sequence[CompletionQuery]) -> FloatArray:
        """float32 [len(queries), n_items]: mean over given items of P(item's category | given's)."""
        known = self.item_category >= 0
        out = np.zeros((len(queries), self.item_category.size), dtype=np.float32)
        for row, query in enumerate(queries):
            given = [self.item_category[i] for i in query.given if self.item_category[i] >= 0]
            if given:
                per_category = self.transitions[given].sum(axis=0) / len(query.given)
                out[row, known] = per_category[self.item_category[known]]
        return out


def _given_matrix(queries: Sequence[CompletionQuery], n_items: int) -> sp.csr_matrix:
    rows = [row for row, query in enumerate(queries) for _ in query.given]
    cols = [item for query in queries for item in query.given]
    values = np.ones(len(rows), dtype=np.float32)
    return sp.csr_matrix((values, (rows, cols)), shape=(len(queries), n_items))


def mean_cosine(vectors: FloatArray, queries: Sequence[CompletionQuery], items: str = "given") -> FloatArray:
    """float32 [len(queries), n_items]: mean cosine of each item with the query's ``given`` items
    (or its ``history``; a query without history gets zeros). ``vectors`` rows are L2-normalised."""
    out = np.zeros((len(queries), vectors.shape[0]), dtype=np.float32)
    for row, query in enumerate(queries):
        chosen = query.given if items == "given" else query.history
        if chosen:
            out[row] = vectors @ vectors[list(chosen)].mean(axis=0)
    return out


def scaled_per_query(signal: FloatArray) -> FloatArray:
    """``signal`` divided by each row's largest value (rows whose largest value is not positive
    stay as they are)."""
    top = signal.max(axis=1, keepdims=True)
    return np.where(top > 0, signal / np.where(top > 0, top, 1.0), signal).astype(np.float32)


def with_popularity_tie_break(signal: FloatArray, popularity: FloatArray) -> FloatArray:
    """``signal`` plus ``POPULARITY_TIE_BREAK`` times popularity scaled to [0, 1]."""
    top = float(popularity.max()) if popularity.size else 0.0
    return signal + POPULARITY_TIE_BREAK * (popularity / top if top > 0 else popularity)


def fuse(signals: Mapping[str, FloatArray], weights: Mapping[str, float]) -> FloatArray:
    """Σ weights[name] · signals[name] over the names in ``weights`` (each signal [Q, n_items] or
    [n_items], broadcast over queries)."""
    total: FloatArray | None = None
    for name, weight in weights.items():
        if weight == 0.0:
            continue
        part = (weight * signals[name]).astype(np.float32)
        total = part if total is None else total + part
    if total is None:
        raise ValueError("every weight is zero: nothing to score with")
    return total


@dataclass(frozen=True)
class Selection:
    """The weights a grid search chose and the tune metric they reached."""

    weights: dict[str, float]
    tune_value: float


def select_weights(
    grid: Mapping[str, Sequence[float]],
    evaluate_weights: Callable[[dict[str, float]], float],
) -> Selection:
    """Tries every combination of ``grid`` (name -> values) and keeps the one ``evaluate_weights``
    scores highest; a tie keeps the combination met first (grid order)."""
    names = list(grid)
    best: Selection | None = None
    for values in itertools.product(*(grid[name] for name in names)):
        weights = dict(zip(names, values, strict=True))
        if all(value == 0.0 for value in values):
            continue
        value = evaluate_weights(weights)
        if best is None or value > best.tune_value:
            best = Selection(weights, value)
    if best is None:
        raise ValueError("the grid has no combination with a non-zero weight")
    return best
