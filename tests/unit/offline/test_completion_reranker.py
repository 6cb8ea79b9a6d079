"""The complete-the-bundle reranker: folds that never read a held-out bundle, its features, and a
second stage that only reorders the first stage's shortlist."""

from __future__ import annotations

import numpy as np
import pytest

from services.ranker.offline.completion_data import CompletionBundle, CompletionDomain, CompletionQuery, split_bundles
from services.ranker.offline.completion_reranker import (
    FEATURES,
    SHORTLIST_OFFSET,
    Examples,
    Reranker,
    RerankerConfig,
    TrainingSignals,
    first_stage,
    fold_examples,
    query_features,
    training_folds,
)
from services.ranker.offline.completion_scoring import DomainVectors

N_ITEMS = 40


def two_kind_domain() -> CompletionDomain:
    """40 items of two kinds (even, odd); 60 bundles of 3 items of one kind, two bundles per session."""
    rng = np.random.default_rng(0)
    bundles = []
    for b in range(60):
        items = rng.choice(np.arange(b % 2, N_ITEMS, 2), size=3, replace=False)
        bundles.append(CompletionBundle(f"b{b}", tuple(int(i) for i in items), session=b // 2, user=b, timestamp=b))
    sessions: dict[int, tuple[int, ...]] = {}
    for bundle in bundles:
        assert bundle.session is not None
        sessions[bundle.session] = tuple(dict.fromkeys([*sessions.get(bundle.session, ()), *bundle.items]))
    return CompletionDomain(
        name="two-kinds",
        item_ids=tuple(str(i) for i in range(N_ITEMS)),
        titles=tuple(f"item {i}" for i in range(N_ITEMS)),
        texts=tuple(f"item {i}" for i in range(N_ITEMS)),
        categories=tuple("even" if i % 2 == 0 else "odd" for i in range(N_ITEMS)),
        bundles=tuple(bundles),
        sessions=sessions,
    )


def kind_vectors() -> DomainVectors:
    noise = np.random.default_rng(1).normal(0.0, 0.4, (N_ITEMS, 4)).astype(np.float32)
    vectors = noise + np.eye(4, dtype=np.float32)[[i % 2 for i in range(N_ITEMS)]] * 2.0
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return DomainVectors(vectors, vectors)


def test_every_training_bundle_is_queried_in_one_fold_whose_signals_hold_neither_it_nor_a_held_out_session() -> None:
    domain = two_kind_domain()
    split = split_bundles(domain, seed=0)
    held_out = {b.session for b in domain.bundles if b.bundle_id in {q.bundle_id for q in (*split.tune, *split.test)}}

    folds = training_folds(domain, split, seed=0, config=RerankerConfig(folds=4, queries_per_bundle=2))

    queried = [q.bundle_id for fold in folds for q in fold.queries]
    assert sorted(set(queried)) == sorted(b.bundle_id for b in split.train_bundles)
    assert all(queried.count(bundle_id) == 2 for bundle_id in set(queried))
    for fold in folds:
        asked = {q.bundle_id for q in fold.queries}
        asked_sessions = {b.session for b in split.train_bundles if b.bundle_id in asked}
        assert not asked & {b.bundle_id for b in fold.bundles}
        assert {b.bundle_id for b in fold.bundles} <= {b.bundle_id for b in split.train_bundles}
        assert not {domain.sessions[s] for s in held_out | asked_sessions if s is not None} & set(fold.sessions)
        for query in fold.queries:
            assert query.hidden not in query.given
            assert len(query.given) == 2


def test_features_count_and_compare_candidates_within_each_query() -> None:
    # Items 0-4. Bundles {0,1,2} and {0,1}, session {1,3}; query: given 0 and 1.
    domain = CompletionDomain(
        name="tiny",
        item_ids=tuple("01234"),
        titles=tuple("abcde"),
        texts=tuple("abcde"),
        categories=("x", "x", "y", "y", ""),
        bundles=(),
        sessions={},
    )
    bundles = (CompletionBundle("a", (0, 1, 2)), CompletionBundle("b", (0, 1)))
    signals = TrainingSignals.of(bundles, ((1, 3),), domain)
    vectors = np.eye(5, dtype=np.float32)
    query = CompletionQuery("q", (0, 1), 2)

    table = query_features([query], signals, DomainVectors(vectors, vectors), session_weight=0.5)[0]

    def column(name: str) -> list[float]:
        return [float(value) for value in table[:, FEATURES.index(name)]]

    assert table.shape == (5, len(FEATURES))
    assert column("bundle_cooccurrence") == [2.0, 2.0, 2.0, 0.0, 0.0]  # 2 with 0 once and with 1 once
    assert column("bundle_cooccurrence_max") == [2.0, 2.0, 1.0, 0.0, 0.0]
    assert column("session_cooccurrence") == [0.0, 0.0, 0.0, 1.0, 0.0]
    assert column("given_items") == [2.0] * 5
    assert column("main_cosine_max") == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert column("main_cosine_rank")[0] == 0.0  # log(1 + rank 0): the query's best
    assert column("popularity_scaled") == [1.0, 1.0, 0.5, 0.0, 0.0]


def test_the_reranker_reorders_only_the_shortlist_and_keeps_the_rest_in_first_stage_order() -> None:
    domain = two_kind_domain()
    split = split_bundles(domain, seed=0)
    vectors = kind_vectors()
    config = RerankerConfig(folds=3, shortlist=5, random_negatives=10, max_iter=20)
    reranker = Reranker(fold_examples(domain, split, vectors, 0.25, seed=0, config=config), seed=0, config=config)
    signals = TrainingSignals.of(split.train_bundles, split.train_sessions, domain)

    scores = reranker.scores(split.test, signals, vectors, 0.25)
    first = first_stage(query_features(split.test, signals, vectors, 0.25))

    for row, query in enumerate(split.test):
        candidates = [i for i in range(N_ITEMS) if i not in query.given]
        by_first = sorted(candidates, key=lambda i: -first[row, i])
        shortlisted = [i for i in candidates if scores[row, i] > SHORTLIST_OFFSET / 2]
        rest = [i for i in candidates if i not in shortlisted]
        assert sorted(shortlisted) == sorted(by_first[:5])
        assert max(scores[row, rest]) < min(scores[row, shortlisted])
        assert [scores[row, i] for i in rest] == [first[row, i] for i in rest]


def test_the_reranker_finds_the_hidden_item_more_often_than_chance() -> None:
    domain = two_kind_domain()
    split = split_bundles(domain, seed=1)
    vectors = kind_vectors()
    config = RerankerConfig(folds=3, shortlist=10, random_negatives=10, max_iter=30)
    examples = fold_examples(domain, split, vectors, 0.25, seed=1, config=config)
    reranker = Reranker(examples, seed=1, config=config)

    scores = reranker.scores(
        split.test, TrainingSignals.of(split.train_bundles, split.train_sessions, domain), vectors, 0.25
    )

    in_top_10 = [
        query.hidden in np.argsort(-np.where(np.isin(np.arange(N_ITEMS), query.given), -np.inf, scores[row]))[:10]
        for row, query in enumerate(split.test)
    ]
    assert examples.queries == 2 * len(split.train_bundles)
    assert np.mean(in_top_10) > 0.5  # chance: 10 of 38, about 0.26; the kind alone halves the field


def test_examples_without_a_hidden_item_are_refused() -> None:
    features = np.zeros((3, len(FEATURES)), dtype=np.float32)

    with pytest.raises(ValueError, match="both hidden items and other candidates"):
        Reranker(Examples(features, np.zeros(3, dtype=np.int8), queries=1), seed=0, config=RerankerConfig())
