"""Exact item-level terms added to a trained model's score: what a shopper's items and bundles share
with a bundle, which the model's low-dimensional vectors blur (docs/bundle-quality.md).

- **item overlap**: the bundle's items the shopper has interacted with,
  ``|items(u) ∩ items(b)| / sqrt(|items(u)| * |items(b)|)``;
- **related bundles**: the bundle's item overlap with each bundle the shopper bought (itself
  excluded), ``Σ_{b' ∈ bundles(u), b' ≠ b} |items(b') ∩ items(b)| / sqrt(|items(b')| * |items(b)|)``,
  over ``sqrt(|bundles(u)|)``.

One implementation, one shopper at a time, serves both the offline evaluation (every shopper, about
2 s for Youshu) and the ranker (one shopper per request, about 0.2 ms for one with 33 bundles), so
the figures the harness reports are the ones the ranker serves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
from scipy import sparse

Indices = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ItemTermWeights:
    """How much each term adds to the model's score (0: the term is off)."""

    overlap: float
    related: float

    def __post_init__(self) -> None:
        for name, value in (("overlap", self.overlap), ("related", self.related)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"the {name} term's weight must be a finite number >= 0, not {value}")


class BundleContents:
    """Which items each bundle holds, with what the terms read of it precomputed as sparse matrices.

    Bundles are rows ``0 .. n_bundles - 1`` and items columns ``0 .. n_items - 1``; an item listed twice
    in a bundle counts once. The bundle-to-bundle overlap is built on the first :meth:`related` (or
    :meth:`prepare_related`) and kept (for Youshu's 4,771 bundles, 4.6 million non-zero pairs, about
    37 MB, 1-2 s to build): summing a shopper's rows of it is five times faster than walking their
    bundles' items to the bundles that hold them, request after request. A model whose related
    weight is 0 never builds it.
    """

    def __init__(self, bundle_rows: npt.ArrayLike, item_columns: npt.ArrayLike, n_bundles: int, n_items: int) -> None:
        """``bundle_rows[k]`` holds ``item_columns[k]``: one entry per (bundle, item) pair.

        Raises:
            ValueError: the pairs are of different lengths or point outside the shape.
        """
        rows, columns = np.asarray(bundle_rows, dtype=np.int64), np.asarray(item_columns, dtype=np.int64)
        if rows.shape != columns.shape or rows.ndim != 1:
            raise ValueError(f"bundle rows {rows.shape} and item columns {columns.shape} must be equal 1-d arrays")
        if rows.size and (rows.min() < 0 or rows.max() >= n_bundles or columns.min() < 0 or columns.max() >= n_items):
            raise ValueError(f"a (bundle, item) pair lies outside {n_bundles} bundles x {n_items} items")
        incidence = sparse.csr_array((np.ones(rows.size), (rows, columns)), shape=(n_bundles, n_items))
        incidence.sum_duplicates()
        incidence.data[:] = 1.0
        self.n_bundles, self.n_items = n_bundles, n_items
        self.sizes = np.diff(incidence.indptr)
        # Entries 1 / sqrt(|items(b)|): a product of two rows is their overlap over both sizes.
        scaled = sparse.csr_array(sparse.diags_array(1.0 / np.sqrt(np.maximum(self.sizes, 1))) @ incidence)
        self._bundles_of_items = sparse.csr_array(scaled.T)

    def prepare_related(self) -> None:
        """Builds the bundle-to-bundle overlaps now, so that no request waits for them."""
        _ = self._bundle_overlaps

    @property
    def related_ready(self) -> bool:
        """Whether the bundle-to-bundle overlaps are built (they are kept once built)."""
        return "_bundle_overlaps" in self.__dict__  # where functools.cached_property keeps them

    @cached_property
    def _bundle_overlaps(self) -> sparse.csr_array:
        scaled = self._items_of_bundles
        overlaps = sparse.csr_array(scaled @ scaled.T)
        # A bought bundle is not related to itself: its own overlap (1 where it has items) goes.
        overlaps = sparse.csr_array(overlaps - sparse.diags_array(overlaps.diagonal()))
        overlaps.eliminate_zeros()
        return sparse.csr_array(overlaps.astype(np.float32))

    def overlap(self, item_columns: Indices, item_count: int) -> Scores:
        """Every bundle's item overlap with a shopper holding the distinct ``item_columns``, out of
        ``item_count`` items in all (items outside the columns count there, nowhere else)."""
        return _rows_summed(self._bundles_of_items, item_columns) / math.sqrt(max(item_count, 1))

    def related(self, bundle_rows: Indices, bundle_count: int) -> Scores:
        """Every bundle's related-bundles term for a shopper who bought the distinct ``bundle_rows``,
        out of ``bundle_count`` bundles in all."""
        return _rows_summed(self._bundle_overlaps, bundle_rows) / math.sqrt(max(bundle_count, 1))

    def scores(
        self, weights: ItemTermWeights, item_columns: Indices, item_count: int, bundle_rows: Indices, bundle_count: int
    ) -> Scores:
        """Both terms, weighted, for one shopper (see :meth:`overlap` and :meth:`related`)."""
        total = np.zeros(self.n_bundles)
        if weights.overlap:
            total += weights.overlap * self.overlap(item_columns, item_count)
        if weights.related:
            total += weights.related * self.related(bundle_rows, bundle_count)
        return total

    def scores_of_new_bundles(
        self,
        weights: ItemTermWeights,
        item_columns: Indices,
        item_count: int,
        bundle_rows: Indices,
        bundle_count: int,
        unlisted: UnlistedBundles,
    ) -> Scores:
        """Both terms, weighted, for bundles outside these contents (synced after them); the shopper
        as in :meth:`scores`. A new bundle relates to the bought bundles it shares items with, as a
        listed one does."""
        total = np.zeros(unlisted.count)
        incidence = unlisted.incidence(self.n_items)
        scale = 1.0 / np.sqrt(np.maximum(unlisted.sizes, 1))
        if weights.overlap and item_columns.size:
            shopper = np.zeros(self.n_items)
            shopper[item_columns] = 1.0
            total += weights.overlap * (incidence @ shopper) * scale / math.sqrt(max(item_count, 1))
        if weights.related and bundle_rows.size:
            # Per item: the sum over the bought bundles holding it of 1 / sqrt(|b'|).
            per_item = _rows_summed(self._items_of_bundles, bundle_rows)
            total += weights.related * (incidence @ per_item) * scale / math.sqrt(max(bundle_count, 1))
        return total

    @cached_property
    def _items_of_bundles(self) -> sparse.csr_array:
        """Bundles x items, entries 1 / sqrt(|items(b)|); built for the overlaps or the first new
        bundle scored, whichever comes first."""
        return sparse.csr_array(self._bundles_of_items.T)


@dataclass(frozen=True)
class UnlistedBundles:
    """Bundles outside a model's contents (synced after it was trained): their (row, item column)
    pairs over the model's item columns, and each one's number of distinct items in all (items the
    model does not know count there, nowhere else)."""

    rows: Indices
    columns: Indices
    sizes: npt.NDArray[np.int64]

    @classmethod
    def of(cls, contents: Sequence[Sequence[str]], item_columns: Mapping[str, int]) -> UnlistedBundles:
        """``contents[r]`` is bundle ``r``'s item ids."""
        rows: list[int] = []
        columns: list[int] = []
        sizes = np.zeros(len(contents), dtype=np.int64)
        for row, item_ids in enumerate(contents):
            distinct = set(item_ids)
            sizes[row] = len(distinct)
            known = [item_columns[i] for i in distinct if i in item_columns]
            rows += [row] * len(known)
            columns += known
        return cls(np.array(rows, dtype=np.int64), np.array(columns, dtype=np.int64), sizes)

    @property
    def count(self) -> int:
        return int(self.sizes.size)

    def incidence(self, n_items: int) -> sparse.csr_array:
        """Bundles x the model's items, 1 where a bundle holds the item."""
        values = np.ones(self.rows.size)
        return sparse.csr_array((values, (self.rows, self.columns)), shape=(self.count, n_items))


def _rows_summed(matrix: sparse.csr_array, rows: Indices) -> Scores:
    """The sum of ``matrix``'s ``rows`` (distinct), as a dense float64 row."""
    picked = matrix[rows]
    return np.bincount(picked.indices, weights=picked.data, minlength=matrix.shape[1]).astype(np.float64, copy=False)
