"""Complete-the-bundle's main method: a learned reranker over a shortlist of the candidates.

- **First stage** (:func:`first_stage`): the main encoder's mean cosine with the given items
  plus co-occurrence scaled per query; no weight to choose. Its best ``shortlist`` candidates per
  query go to the second stage.
- **Second stage**: a gradient-boosted classifier (scikit-learn's ``HistGradientBoostingClassifier``)
  scores each shortlisted candidate from :data:`FEATURES`. The rest keep the first stage's order
  below the shortlist. Scoring every candidate with the classifier instead did far worse (electronic
  seed 0, tune Recall@10 0.32 against 0.50): trained mostly on hard negatives, it misjudges the long
  tail it rarely saw.
- **Training data** (:func:`fold_examples`) mirrors the evaluation protocol inside the training
  split, so no tune or test bundle is read. The training bundles are dealt into ``folds`` folds.
  For each fold, the signals come from the other folds' bundles and from the sessions holding no
  bundle of the fold (nor a tune or test bundle, already left out of the split's sessions). Each
  bundle of the fold gives ``queries_per_bundle`` queries, each with one item hidden. A query's
  examples: the hidden item, the first stage's shortlist and ``random_negatives`` random items.

The bundle adapter is not a feature: fold queries would see an adapter trained on their own bundles.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.ensemble import HistGradientBoostingClassifier  # type: ignore[import-untyped]

from services.ranker.offline.completion_data import CompletionBundle, CompletionDomain, CompletionQuery, CompletionSplit
from services.ranker.offline.completion_scoring import (
    CategoryTransitions,
    CooccurrenceCounts,
    DomainVectors,
    FloatArray,
    mean_cosine,
    popularity_counts,
    scaled_per_query,
)

FEATURES = (
    "bundle_cooccurrence",
    "session_cooccurrence",
    "bundle_cooccurrence_max",
    "session_cooccurrence_max",
    "cooccurrence_scaled",
    "cooccurrence_rank",
    "category_transition",
    "main_cosine",
    "main_cosine_below_best",
    "main_cosine_rank",
    "main_cosine_max",
    "main_cosine_max_below_best",
    "title_cosine",
    "title_cosine_below_best",
    "title_cosine_rank",
    "popularity_scaled",
    "given_items",
)
"""What the classifier reads of a (query, candidate) pair. Sums are over the given items, ``_max``
their largest; ``_below_best`` is the gap to the query's best candidate and ``_rank`` the log of the
candidate's rank in the query: the classifier compares candidates across queries, and raw cosines
and counts shift from one query to the next."""

SHORTLIST_OFFSET = 1_000.0
"""Added to shortlisted candidates' log-probabilities so that they rank above every first-stage
score (at most 2)."""


@dataclass(frozen=True)
class RerankerConfig:
    """How the reranker is trained; the defaults are the ones reported (docs/bundle-quality.md)."""

    folds: int = 10
    queries_per_bundle: int = 2
    shortlist: int = 60
    random_negatives: int = 60
    max_iter: int = 300
    learning_rate: float = 0.05
    max_leaf_nodes: int = 31
    l2_regularization: float = 1.0


@dataclass(frozen=True)
class TrainingSignals:
    """What a set of training bundles and sessions says about every item."""

    cooccurrence: CooccurrenceCounts
    category: CategoryTransitions
    popularity: FloatArray

    @classmethod
    def of(
        cls, bundles: Sequence[CompletionBundle], sessions: Sequence[Sequence[int]], domain: CompletionDomain
    ) -> TrainingSignals:
        return cls(
            CooccurrenceCounts(bundles, sessions, domain.n_items),
            CategoryTransitions(bundles, domain.categories),
            popularity_counts(bundles, domain.n_items),
        )


def first_stage(table: FloatArray) -> FloatArray:
    """float32 [n_queries, n_items]: mean main cosine + co-occurrence scaled per query, read from the
    queries' feature table (:func:`query_features`)."""
    return table[..., FEATURES.index("main_cosine")] + table[..., FEATURES.index("cooccurrence_scaled")]


def query_features(
    queries: Sequence[CompletionQuery], signals: TrainingSignals, vectors: DomainVectors, session_weight: float
) -> FloatArray:
    """float32 [len(queries), n_items, len(FEATURES)]."""
    bundle_counts = signals.cooccurrence.scores(queries, session_weight=0.0)
    session_counts = signals.cooccurrence.scores(queries, session_weight=1.0) - bundle_counts
    cooccurrence = bundle_counts + session_weight * session_counts
    main = mean_cosine(vectors.main_texts, queries)
    main_max = _max_cosine(vectors.main_texts, queries)
    titles = mean_cosine(vectors.baseline_titles, queries)
    popularity = signals.popularity / max(float(signals.popularity.max()), 1.0)
    given = np.array([len(q.given) for q in queries], dtype=np.float32)[:, None]
    columns = {
        "bundle_cooccurrence": bundle_counts,
        "session_cooccurrence": session_counts,
        "bundle_cooccurrence_max": _max_counts(signals.cooccurrence.bundle_pairs, queries),
        "session_cooccurrence_max": _max_counts(signals.cooccurrence.session_pairs, queries),
        "cooccurrence_scaled": scaled_per_query(cooccurrence),
        "cooccurrence_rank": _log_rank(cooccurrence),
        "category_transition": signals.category.scores(queries),
        "main_cosine": main,
        "main_cosine_below_best": main - main.max(axis=1, keepdims=True),
        "main_cosine_rank": _log_rank(main),
        "main_cosine_max": main_max,
        "main_cosine_max_below_best": main_max - main_max.max(axis=1, keepdims=True),
        "title_cosine": titles,
        "title_cosine_below_best": titles - titles.max(axis=1, keepdims=True),
        "title_cosine_rank": _log_rank(titles),
        "popularity_scaled": np.broadcast_to(popularity, main.shape),
        "given_items": np.broadcast_to(given, main.shape),
    }
    return np.stack([np.asarray(columns[name], dtype=np.float32) for name in FEATURES], axis=-1)


@dataclass(frozen=True)
class Examples:
    """Training rows: features [n, len(FEATURES)] and labels [n] (1: the hidden item)."""

    features: FloatArray
    labels: npt.NDArray[np.int8]
    queries: int


@dataclass(frozen=True)
class Fold:
    """One fold of the training split: queries made from its bundles, and the bundles and sessions
    its signals come from (every other training bundle; the sessions holding none of its bundles)."""

    queries: tuple[CompletionQuery, ...]
    bundles: tuple[CompletionBundle, ...]
    sessions: tuple[tuple[int, ...], ...]


def training_folds(domain: CompletionDomain, split: CompletionSplit, seed: int, config: RerankerConfig) -> list[Fold]:
    """The training split dealt into ``config.folds`` folds (seeded; see the module). Sessions that
    hold a tune or test bundle are left out of every fold, as they are out of the split's training."""
    draw = random.Random(f"reranker-folds-{seed}")
    bundles = list(split.train_bundles)
    order = list(range(len(bundles)))
    draw.shuffle(order)
    training_ids = {b.bundle_id for b in bundles}
    held_out_sessions = {b.session for b in domain.bundles if b.session is not None and b.bundle_id not in training_ids}
    folds = []
    for fold in range(config.folds):
        in_fold = set(order[fold :: config.folds])
        fold_bundles = [bundles[i] for i in sorted(in_fold)]
        left_out = held_out_sessions | {b.session for b in fold_bundles if b.session is not None}
        queries = tuple(
            CompletionQuery(bundle.bundle_id, tuple(i for i in bundle.items if i != hidden), hidden)
            for bundle in fold_bundles
            for hidden in draw.sample(bundle.items, min(config.queries_per_bundle, len(bundle.items)))
        )
        folds.append(
            Fold(
                queries=queries,
                bundles=tuple(bundles[i] for i in range(len(bundles)) if i not in in_fold),
                sessions=tuple(
                    items for sid, items in sorted(domain.sessions.items()) if sid not in left_out and len(items) >= 2
                ),
            )
        )
    return folds


def fold_examples(
    domain: CompletionDomain,
    split: CompletionSplit,
    vectors: DomainVectors,
    session_weight: float,
    seed: int,
    config: RerankerConfig,
) -> Examples:
    """The classifier's training rows from the training split alone (see the module).

    Raises:
        ValueError: no training bundle gives a query.
    """
    negatives = np.random.default_rng(seed)
    features: list[FloatArray] = []
    labels: list[npt.NDArray[np.int8]] = []
    queries_made = 0
    for fold in training_folds(domain, split, seed, config):
        if not fold.queries:
            continue
        signals = TrainingSignals.of(fold.bundles, fold.sessions, domain)
        table = query_features(fold.queries, signals, vectors, session_weight)
        first = first_stage(table)
        for row, query in enumerate(fold.queries):
            shortlist = _shortlist(first[row], query, config.shortlist)
            sampled = negatives.choice(domain.n_items, min(config.random_negatives, domain.n_items), replace=False)
            candidates = np.unique(np.concatenate([shortlist, sampled, [query.hidden]]))
            candidates = candidates[~np.isin(candidates, query.given)]
            features.append(table[row, candidates])
            labels.append((candidates == query.hidden).astype(np.int8))
        queries_made += len(fold.queries)
    if not features:
        raise ValueError(f"{domain.name}: no training bundle to learn the reranker from")
    return Examples(np.concatenate(features), np.concatenate(labels), queries_made)


class Reranker:
    """The trained second stage; :meth:`scores` ranks queries' candidates."""

    def __init__(self, examples: Examples, seed: int, config: RerankerConfig) -> None:
        """Fits the classifier on ``examples`` (early stopping on a seeded tenth of them).

        Raises:
            ValueError: the examples hold no positive or no negative.
        """
        if examples.labels.min() == examples.labels.max():
            raise ValueError("the reranker needs both hidden items and other candidates to learn from")
        self.config = config
        self.model = HistGradientBoostingClassifier(
            max_iter=config.max_iter,
            learning_rate=config.learning_rate,
            max_leaf_nodes=config.max_leaf_nodes,
            l2_regularization=config.l2_regularization,
            early_stopping=True,
            random_state=seed,
        ).fit(examples.features, examples.labels)

    def scores(
        self,
        queries: Sequence[CompletionQuery],
        signals: TrainingSignals,
        vectors: DomainVectors,
        session_weight: float,
    ) -> FloatArray:
        """float32 [len(queries), n_items]: the shortlist by the classifier's log-probability above
        the rest in the first stage's order."""
        table = query_features(queries, signals, vectors, session_weight)
        first = first_stage(table)
        out = first.copy()
        if not queries:
            return out
        shortlists = [_shortlist(first[row], query, self.config.shortlist) for row, query in enumerate(queries)]
        rows = np.repeat(np.arange(len(queries)), [len(shortlist) for shortlist in shortlists])
        columns = np.concatenate(shortlists)
        probability = self.model.predict_proba(table[rows, columns])[:, 1]
        out[rows, columns] = SHORTLIST_OFFSET + np.log(np.clip(probability, 1e-12, 1.0))
        return out


def _shortlist(first: FloatArray, query: CompletionQuery, size: int) -> npt.NDArray[np.int64]:
    """The ``size`` best first-stage candidates of a query, its given items excluded."""
    scores = first.astype(np.float64, copy=True)
    scores[list(query.given)] = -np.inf
    size = min(size, scores.size - len(set(query.given)))
    return np.argpartition(-scores, size - 1)[:size].astype(np.int64)


def _max_cosine(vectors: FloatArray, queries: Sequence[CompletionQuery]) -> FloatArray:
    out = np.empty((len(queries), vectors.shape[0]), dtype=np.float32)
    for row, query in enumerate(queries):
        out[row] = (vectors @ vectors[list(query.given)].T).max(axis=1)
    return out


def _max_counts(pairs: sp.csr_matrix, queries: Sequence[CompletionQuery]) -> FloatArray:
    out = np.zeros((len(queries), pairs.shape[1]), dtype=np.float32)
    for row, query in enumerate(queries):
        out[row] = pairs[list(query.given)].toarray().max(axis=0)
    return out


def _log_rank(signal: FloatArray) -> FloatArray:
    """log(1 + the rank of each candidate in its query), best first, ties in index order."""
    order = np.argsort(-signal, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(signal.shape[1]), signal.shape), axis=1)
    return np.log1p(ranks).astype(np.float32)
