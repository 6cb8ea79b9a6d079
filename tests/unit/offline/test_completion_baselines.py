"""Each completion signal and baseline on a tiny hand-made dataset, and the end-to-end evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from services.ranker.offline.completion import ABLATIONS, BASELINES, MAIN, evaluate_seed
from services.ranker.offline.completion_adapter import AdapterConfig
from services.ranker.offline.completion_data import CompletionBundle, CompletionDomain, CompletionQuery
from services.ranker.offline.completion_scoring import (
    CategoryTransitions,
    CooccurrenceCounts,
    DomainVectors,
    fuse,
    mean_cosine,
    popularity_counts,
    scaled_per_query,
    select_weights,
    with_popularity_tie_break,
)

# 5 items. Training bundles {0,1,2} and {0,1}; one training session {1,3}.
BUNDLES = (CompletionBundle("a", (0, 1, 2)), CompletionBundle("b", (0, 1)))
SESSIONS = ((1, 3),)
QUERIES = (CompletionQuery("q", (0,), 2), CompletionQuery("r", (1, 4), 3))


def test_popularity_counts_training_bundles_per_item() -> None:
    assert popularity_counts(BUNDLES, 5).tolist() == [2.0, 2.0, 1.0, 0.0, 0.0]


def test_cooccurrence_sums_bundle_and_weighted_session_counts_over_given_items() -> None:
    counts = CooccurrenceCounts(BUNDLES, SESSIONS, 5)

    bundles_only = counts.scores(QUERIES, session_weight=0.0)
    with_sessions = counts.scores(QUERIES, session_weight=0.5)

    # Query q (given 0): 1 twice, 2 once. Query r (given 1 and 4): 0 twice, 2 once, 3 in a session.
    assert bundles_only.tolist() == [[0, 2, 1, 0, 0], [2, 0, 1, 0, 0]]
    assert with_sessions.tolist() == [[0, 2, 1, 0, 0], [2, 0, 1, 0.5, 0]]


def test_popularity_breaks_ties_between_equal_counts_without_reordering_others() -> None:
    scores = with_popularity_tie_break(np.array([[1.0, 1.0, 0.0]], dtype=np.float32), np.array([1.0, 4.0, 9.0]))

    assert list(np.argsort(-scores[0], kind="stable")) == [1, 0, 2]


def test_mean_cosine_averages_over_the_given_items_and_history() -> None:
    vectors = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32)
    queries = (CompletionQuery("q", (0, 1), 2, history=(4,)), CompletionQuery("r", (3,), 0))

    given = mean_cosine(vectors, queries)
    history = mean_cosine(vectors, queries, items="history")

    assert given[0] == pytest.approx([0.5, 0.5, 0.5, 0.7, 0.5])
    assert given[1] == pytest.approx([0.6, 0.8, 0.6, 1.0, 0.8])
    assert history[0] == pytest.approx([0, 1, 0, 0.8, 1])
    assert history[1].tolist() == [0, 0, 0, 0, 0]


def test_category_transitions_score_items_by_the_given_items_category() -> None:
    # Categories: 0 cam, 1 bat, 2 bat, 3 cam, 4 none. Pairs in bundles: cam->bat 3, bat->cam 3, bat->bat 2.
    categories = ["cam", "bat", "bat", "cam", ""]

    scores = CategoryTransitions(BUNDLES, categories).scores((CompletionQuery("q", (3,), 2),))

    assert scores.tolist() == [[0.0, 1.0, 1.0, 0.0, 0.0]]


def test_scaled_per_query_divides_by_the_row_maximum_and_keeps_zero_rows() -> None:
    scaled = scaled_per_query(np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32))

    assert scaled.tolist() == [[1.0, 0.5, 0.0], [0.0, 0.0, 0.0]]


def test_fuse_adds_weighted_signals() -> None:
    signals = {"a": np.array([[1.0, 2.0]], dtype=np.float32), "b": np.array([3.0, 0.0], dtype=np.float32)}

    assert fuse(signals, {"a": 2.0, "b": 0.5}).tolist() == [[3.5, 4.0]]
    with pytest.raises(ValueError, match="every weight is zero"):
        fuse(signals, {"a": 0.0})


def test_select_weights_keeps_the_best_and_on_a_tie_the_first() -> None:
    chosen = select_weights({"x": (0.0, 1.0, 2.0, 3.0)}, lambda w: min(w["x"], 2.0))

    assert chosen.weights == {"x": 2.0}
    assert chosen.tune_value == 2.0


def _clustered_domain() -> CompletionDomain:
    """60 items in 6 kinds of 10 (item i is of kind i % 6); 90 bundles of 3 items of one kind.
    Text vectors put each kind on its own axis, so text and co-occurrence both find partners."""
    rng = np.random.default_rng(0)
    bundles = []
    for b in range(90):
        kind = b % 6
        items = rng.choice(np.arange(kind, 60, 6), size=3, replace=False)
        bundles.append(CompletionBundle(str(b), tuple(int(i) for i in items), session=b, user=b, timestamp=b))
    return CompletionDomain(
        name="clustered",
        item_ids=tuple(str(i) for i in range(60)),
        titles=tuple(f"kind {i % 6} item {i}" for i in range(60)),
        texts=tuple(f"kind {i % 6} item {i}" for i in range(60)),
        categories=tuple(f"kind {i % 6}" for i in range(60)),
        bundles=tuple(bundles),
        sessions={b.session: b.items for b in bundles if b.session is not None},
    )


def test_every_method_runs_end_to_end_and_text_and_cooccurrence_beat_popularity() -> None:
    domain = _clustered_domain()
    noise = np.random.default_rng(1).normal(0.0, 0.3, (60, 8)).astype(np.float32)
    vectors = noise + np.eye(8, dtype=np.float32)[[i % 6 for i in range(60)]] * 2.0
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    result = evaluate_seed(domain, DomainVectors(vectors, vectors), seed=0, adapter_config=AdapterConfig(epochs=2))

    assert set(result.test) == {*BASELINES, MAIN, *ABLATIONS}
    assert result.sizes["test_bundles"] == 9
    for method in ("cooccurrence", "text_knn", "cooc_text_mix", MAIN):
        assert result.test[method]["recall@10"] > result.test["popularity"]["recall@10"]
    assert 0.0 < result.beyond[MAIN]["coverage"] <= 1.0
