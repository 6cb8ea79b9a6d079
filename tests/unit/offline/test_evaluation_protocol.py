"""Specification of the evaluation protocol: which users count, what is masked, and chunking."""

from __future__ import annotations

import math

import pytest
import torch

from services.ranker.offline.data import bundle_rec_data
from services.ranker.offline.evaluation import EmbeddingScorer, evaluate


class FixedScores:
    """Scores from a full [n_users, n_bundles] table."""

    def __init__(self, table: list[list[float]]) -> None:
        self.table = torch.tensor(table)

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.table[users]


# 4 users, 5 bundles. User 2 has nothing held out; user 3 has a test pair but no tune pair.
DATA = bundle_rec_data(
    4,
    5,
    3,
    train=[(0, 0), (1, 4), (2, 1), (3, 2)],
    tune=[(0, 3), (1, 0)],
    test=[(0, 1), (0, 2), (1, 3), (3, 0)],
    user_item=[(0, 0)],
    bundle_item=[(0, 0), (1, 1), (2, 2)],
)
SCORES = FixedScores(
    [
        [0.9, 0.1, 0.5, 0.8, 0.2],
        [0.3, 0.2, 0.1, 0.0, 0.9],
        [0.5, 0.5, 0.5, 0.5, 0.5],
        [0.1, 0.2, 0.9, 0.3, 0.4],
    ]
)


def test_held_out_split_lists_only_users_with_a_positive_and_their_training_pairs() -> None:
    assert DATA.tune.users.tolist() == [0, 1]
    assert DATA.test.users.tolist() == [0, 1, 3]
    assert DATA.test.positive_rows.tolist() == [0, 0, 1, 2]
    assert DATA.test.positive_bundles.tolist() == [1, 2, 3, 0]
    assert DATA.test.excluded_rows.tolist() == [0, 1, 2]
    assert DATA.test.excluded_bundles.tolist() == [0, 4, 2]


def test_tune_masks_training_pairs_and_averages_over_tune_users() -> None:
    report = evaluate(SCORES, DATA.tune, ks=(1, 2))
    # User 0: bundle 0 (train) masked, tune bundle 3 (0.8) is first. User 1: bundle 4 (train)
    # masked, tune bundle 0 (0.3) is first.
    assert report.n_users == 2
    assert report.metrics == {"recall@1": 1.0, "ndcg@1": 1.0, "recall@2": 1.0, "ndcg@2": 1.0}


def test_test_masks_training_pairs_but_not_tune_pairs() -> None:
    report = evaluate(SCORES, DATA.test, ks=(2,))
    # User 0: order after masking bundle 0 is 3 (tune, not masked), 2, 4, 1: one of two positives
    # (bundle 2) in the top 2 at rank 1. User 1: bundle 4 masked; order 0, 1, 2, 3: positive 3 missed.
    # User 3: bundle 2 masked; order 4, 3, 1, 0: positive 0 missed.
    user_0_ndcg = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert report.n_users == 3
    assert report.metrics["recall@2"] == pytest.approx(0.5 / 3, abs=1e-15)
    assert report.metrics["ndcg@2"] == pytest.approx(user_0_ndcg / 3, abs=1e-15)


@pytest.mark.parametrize("chunk_size", [1, 2, 1000])
def test_chunking_does_not_change_the_figures(chunk_size: int) -> None:
    expected = evaluate(SCORES, DATA.test, ks=(1, 2, 4)).metrics
    assert evaluate(SCORES, DATA.test, ks=(1, 2, 4), chunk_size=chunk_size).metrics == expected


def test_embedding_scorer_scores_with_dot_products() -> None:
    scorer = EmbeddingScorer(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[3.0, 4.0], [5.0, 6.0]]))
    assert scorer.score_users(torch.tensor([1, 0])).tolist() == [[8.0, 12.0], [3.0, 5.0]]


def test_an_empty_split_is_refused() -> None:
    data = bundle_rec_data(2, 2, 1, train=[(0, 0)], tune=[], test=[(1, 1)], user_item=[], bundle_item=[])
    with pytest.raises(ValueError, match="no user with a positive"):
        evaluate(SCORES, data.tune)


def test_ids_outside_the_declared_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"user-bundle train: a second id is outside \[0, 5\)"):
        bundle_rec_data(4, 5, 3, train=[(0, 5)], tune=[], test=[], user_item=[], bundle_item=[])


def test_graphs_are_binary_and_deduplicated() -> None:
    data = bundle_rec_data(
        2, 2, 2, train=[(1, 0), (0, 1), (1, 0)], tune=[], test=[], user_item=[(0, 1)], bundle_item=[(1, 1), (1, 0)]
    )
    assert data.train_pairs.tolist() == [[0, 1], [1, 0]]
    assert data.user_bundle.to_dense().tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert data.user_item.to_dense().tolist() == [[0.0, 1.0], [0.0, 0.0]]
    assert data.bundle_item.to_dense().tolist() == [[0.0, 0.0], [1.0, 1.0]]


def test_summed_scorers_score_with_the_sum_of_their_scores() -> None:
    generator = torch.Generator().manual_seed(3)
    first = EmbeddingScorer(torch.randn(5, 4, generator=generator), torch.randn(7, 4, generator=generator))
    second = EmbeddingScorer(torch.randn(5, 2, generator=generator), torch.randn(7, 2, generator=generator))
    users = torch.tensor([0, 3, 4])

    summed = EmbeddingScorer.summed([first, second])

    expected = first.score_users(users) + second.score_users(users)
    assert torch.allclose(summed.score_users(users), expected, atol=1e-6)
    assert EmbeddingScorer.summed([first]) is first
    with pytest.raises(ValueError, match="no scorer"):
        EmbeddingScorer.summed([])


def test_a_bundle_prior_adds_its_weighted_value_to_every_users_score() -> None:
    generator = torch.Generator().manual_seed(4)
    scorer = EmbeddingScorer(torch.randn(3, 4, generator=generator), torch.randn(5, 4, generator=generator))
    prior = torch.tensor([0.0, 1.0, 2.0, 0.5, 3.0])
    users = torch.tensor([0, 2])

    with_prior = scorer.with_bundle_prior(prior, 0.3)

    assert torch.allclose(with_prior.score_users(users), scorer.score_users(users) + 0.3 * prior, atol=1e-6)
