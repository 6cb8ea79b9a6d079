"""Specification of Recall@K and NDCG@K on hand-computed cases (the papers' definitions)."""

from __future__ import annotations

import math

import pytest
import torch

from services.ranker.offline.metrics import (
    mean_over_rows_with_positives,
    positive_ranks,
    recall_ndcg_per_row,
)

NOTHING = torch.tensor([], dtype=torch.int64)


def ranks_of(
    scores: list[list[float]],
    positives: list[tuple[int, int]],
    excluded: list[tuple[int, int]] | None = None,
) -> torch.Tensor:
    def split(pairs: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        if not pairs:
            return NOTHING, NOTHING
        rows, bundles = zip(*pairs, strict=True)
        return torch.tensor(rows), torch.tensor(bundles)

    positive_rows, positive_bundles = split(positives)
    excluded_rows, excluded_bundles = split(excluded or [])
    return positive_ranks(torch.tensor(scores), positive_rows, positive_bundles, excluded_rows, excluded_bundles)


def metrics_of(
    scores: list[list[float]],
    positives: list[tuple[int, int]],
    ks: tuple[int, ...],
    excluded: list[tuple[int, int]] | None = None,
) -> dict[str, list[float]]:
    ranks = ranks_of(scores, positives, excluded)
    rows = torch.tensor([row for row, _ in positives], dtype=torch.int64)
    per_row = recall_ndcg_per_row(ranks, rows, len(scores), ks)
    return {name: values.tolist() for name, values in per_row.items()}


def test_ranks_count_the_bundles_scored_higher() -> None:
    scores = [[0.9, 0.8, 0.7, 0.6, 0.5]]
    assert ranks_of(scores, [(0, 1), (0, 3)]).tolist() == [1, 3]


def test_recall_and_ndcg_for_two_positives_at_ranks_one_and_three() -> None:
    # Positives are bundles 1 and 3, at 0-based ranks 1 and 3.
    metrics = metrics_of([[0.9, 0.8, 0.7, 0.6, 0.5]], [(0, 1), (0, 3)], ks=(1, 2, 4))
    assert metrics["recall@1"] == [0.0]
    assert metrics["ndcg@1"] == [0.0]
    assert metrics["recall@2"] == [0.5]
    # DCG@2 = 1/log2(3); IDCG@2 = 1 + 1/log2(3).
    assert metrics["ndcg@2"][0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)), abs=1e-12)
    assert metrics["recall@4"] == [1.0]
    # DCG@4 = 1/log2(3) + 1/log2(5); IDCG@4 covers min(2, 4) = 2 positions.
    assert metrics["ndcg@4"][0] == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)), abs=1e-12
    )


def test_recall_divides_by_all_positives_even_when_k_is_smaller() -> None:
    # Three positives, the top bundle is one of them: Recall@1 = 1/3 (not 1/min(3, 1)), NDCG@1 = 1.
    metrics = metrics_of([[0.9, 0.8, 0.7, 0.1]], [(0, 0), (0, 1), (0, 3)], ks=(1,))
    assert metrics["recall@1"] == [pytest.approx(1 / 3, abs=1e-15)]
    assert metrics["ndcg@1"] == [1.0]


def test_ideal_dcg_covers_only_the_positives_when_fewer_than_k() -> None:
    # One positive at rank 2 with K = 10: DCG = 1/log2(4) = 0.5, IDCG = 1/log2(2) = 1.
    metrics = metrics_of([[0.9, 0.8, 0.7, 0.1]], [(0, 2)], ks=(10,))
    assert metrics["recall@10"] == [1.0]
    assert metrics["ndcg@10"] == [0.5]


def test_excluded_bundles_rank_below_every_other_bundle() -> None:
    # Bundle 0 (a training pair) scores highest but is masked: the positive moves up to rank 0.
    scores = [[0.9, 0.8, 0.7]]
    assert ranks_of(scores, [(0, 1)], excluded=[(0, 0)]).tolist() == [0]
    assert metrics_of(scores, [(0, 1)], ks=(1,), excluded=[(0, 0)]) == {"recall@1": [1.0], "ndcg@1": [1.0]}
    assert metrics_of(scores, [(0, 1)], ks=(1,)) == {"recall@1": [0.0], "ndcg@1": [0.0]}


def test_masking_applies_only_to_the_excluded_pairs_own_row() -> None:
    scores = [[0.9, 0.8, 0.7], [0.9, 0.8, 0.7]]
    assert ranks_of(scores, [(0, 1), (1, 1)], excluded=[(0, 0)]).tolist() == [0, 1]


def test_an_excluded_positive_is_never_a_hit_but_still_counts() -> None:
    scores = [[0.9, 0.8, 0.7]]
    ranks = ranks_of(scores, [(0, 0), (0, 1)], excluded=[(0, 0)])
    assert ranks.tolist() == [3, 0]
    metrics = metrics_of(scores, [(0, 0), (0, 1)], ks=(3,), excluded=[(0, 0)])
    assert metrics["recall@3"] == [0.5]
    # DCG = 1/log2(2) = 1 (the positive at rank 0); IDCG over 2 positives = 1 + 1/log2(3).
    assert metrics["ndcg@3"][0] == pytest.approx(1 / (1 + 1 / math.log2(3)), abs=1e-12)


def test_ties_rank_the_lower_bundle_id_first() -> None:
    scores = [[0.5, 0.5, 0.5, 0.5]]
    assert ranks_of(scores, [(0, 0), (0, 2), (0, 3)]).tolist() == [0, 2, 3]
    # Bundle 2 ties with bundles 0 and 1 (lower ids, so ranked first) and scores below bundle 3.
    assert ranks_of([[0.5, 0.5, 0.5, 0.9]], [(0, 2)]).tolist() == [3]
    metrics = metrics_of(scores, [(0, 2)], ks=(2, 3))
    assert metrics["recall@2"] == [0.0]
    assert metrics["recall@3"] == [1.0]
    assert metrics["ndcg@3"] == [0.5]


def test_a_row_without_positives_is_nan_and_left_out_of_the_mean() -> None:
    scores = torch.tensor([[0.9, 0.8], [0.9, 0.8], [0.1, 0.2]])
    rows = torch.tensor([0, 1])
    ranks = positive_ranks(scores, rows, torch.tensor([0, 1]), NOTHING, NOTHING)
    per_row = recall_ndcg_per_row(ranks, rows, 3, ks=(1,))
    assert per_row["recall@1"][:2].tolist() == [1.0, 0.0]
    assert math.isnan(float(per_row["recall@1"][2]))
    assert mean_over_rows_with_positives(per_row) == {"recall@1": 0.5, "ndcg@1": 0.5}


def test_k_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="K must be at least 1"):
        recall_ndcg_per_row(torch.tensor([0]), torch.tensor([0]), 1, ks=(0,))
