"""Completion metrics on hand-computed cases: ranks with given items masked, top lists, beyond
accuracy and the paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.ranker.offline.completion_data import CompletionQuery
from services.ranker.offline.completion_metrics import (
    beyond_accuracy,
    paired_bootstrap_relative_gain,
    per_query_metrics,
    popularity_percentiles,
    top_items,
)


def test_recall_and_ndcg_count_the_hidden_items_rank_with_given_items_masked() -> None:
    # 12 items. Query 0: hidden 3 scores best -> rank 0. Query 1: items 0..6 outscore hidden 11,
    # but 0 and 1 are given (masked), so 5 items are above it -> rank 5.
    scores = np.zeros((2, 12), dtype=np.float32)
    scores[0, 3] = 1.0
    scores[1, :7] = [9, 8, 7, 6, 5, 4, 3]
    scores[1, 11] = 2.0
    queries = [CompletionQuery("a", (5,), 3), CompletionQuery("b", (0, 1), 11)]

    metrics = per_query_metrics(scores, queries, ks=(5, 10))

    assert metrics["recall@5"].tolist() == [1.0, 0.0]
    assert metrics["recall@10"].tolist() == [1.0, 1.0]
    assert metrics["ndcg@5"].tolist() == [1.0, 0.0]
    assert metrics["ndcg@10"][1] == pytest.approx(1.0 / math.log2(7.0))


def test_an_equal_score_ranks_the_lower_item_first() -> None:
    scores = np.ones((1, 8), dtype=np.float32)
    queries = [CompletionQuery("a", (0,), 6)]  # items 1..5 tie with it and come first: rank 5

    metrics = per_query_metrics(scores, queries, ks=(5, 6))

    assert metrics["recall@5"].tolist() == [0.0]
    assert metrics["ndcg@6"][0] == pytest.approx(1.0 / math.log2(7.0))


def test_top_items_skip_the_given_items_and_break_ties_by_lower_index() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.1, 0.9]], dtype=np.float32)

    top = top_items(scores, [CompletionQuery("a", (1,), 0)], k=3)

    assert top.tolist() == [[4, 0, 2]]


def test_popularity_percentiles_average_ties() -> None:
    percentile = popularity_percentiles(np.array([0.0, 5.0, 5.0, 9.0], dtype=np.float32))

    assert percentile.tolist() == [0.0, 0.5, 0.5, 1.0]


def test_beyond_accuracy_on_two_hand_made_lists() -> None:
    vectors = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    categories = ["a", "b", "a", ""]
    popularity = np.array([0, 1, 2, 3], dtype=np.float32)
    top = np.array([[0, 1], [0, 2]], dtype=np.int64)

    figures = beyond_accuracy(top, vectors, categories, popularity)

    assert figures["coverage"] == 0.75
    assert figures["diversity"] == pytest.approx(0.5)  # distances 1 (orthogonal) and 0 (equal)
    assert figures["distinct_categories"] == 1.5
    assert figures["popularity_percentile"] == pytest.approx((0 + 1 / 3 + 0 + 2 / 3) / 4)


def test_bootstrap_gain_of_a_method_that_doubles_every_value_is_exactly_one() -> None:
    rng = np.random.default_rng(1)
    baseline = [rng.uniform(0.1, 1.0, 30) for _ in range(3)]

    gain = paired_bootstrap_relative_gain([2.0 * b for b in baseline], baseline, resamples=200)

    assert gain["relative_gain"] == pytest.approx(1.0)
    assert gain["ci95_low"] == pytest.approx(1.0)
    assert gain["ci95_high"] == pytest.approx(1.0)


def test_bootstrap_interval_of_a_noisy_zero_gain_contains_zero() -> None:
    rng = np.random.default_rng(2)
    main = [rng.integers(0, 2, 100).astype(np.float64) for _ in range(5)]
    baseline = [rng.integers(0, 2, 100).astype(np.float64) for _ in range(5)]

    gain = paired_bootstrap_relative_gain(main, baseline, resamples=500)

    assert gain["ci95_low"] < 0.0 < gain["ci95_high"]
    assert gain["ci95_low"] <= gain["relative_gain"] <= gain["ci95_high"]


def test_bootstrap_refuses_unpaired_inputs() -> None:
    with pytest.raises(ValueError, match="same queries"):
        paired_bootstrap_relative_gain([np.ones(3)], [np.ones(4)])
