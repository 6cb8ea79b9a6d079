"""Specification of the beyond-accuracy figures on a hand-computed case."""

from __future__ import annotations

import pytest
import torch

from services.ranker.offline.beyond_accuracy import beyond_accuracy
from services.ranker.offline.data import BundleRecData, bundle_rec_data


class FixedScores:
    def __init__(self, scores: list[list[float]]) -> None:
        self.scores = torch.tensor(scores, dtype=torch.float32)

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.scores[users]


@pytest.fixture
def data() -> BundleRecData:
    # Bundles b0 = {i0, i1}, b1 = {i1, i2}, b2 = {i3}, b3 = {i0, i1}; training pairs: b0 twice, b1 once.
    return bundle_rec_data(
        3,
        4,
        4,
        train=[(0, 0), (1, 0), (2, 1)],
        tune=[(2, 2)],
        test=[(0, 3), (1, 2)],
        user_item=[(0, 0)],
        bundle_item=[(0, 0), (0, 1), (1, 1), (1, 2), (2, 3), (3, 0), (3, 1)],
    )


def test_coverage_popularity_and_diversity_of_the_top_lists(data: BundleRecData) -> None:
    # Users 0 and 1 both have b0 masked: user 0's top 2 is b2, b3; user 1's is b1, b3.
    scores = FixedScores([[9, 1, 5, 3], [9, 8, 1, 7], [0, 0, 0, 0]])

    figures = beyond_accuracy(scores, data, data.test, k=2)

    assert figures["coverage@2"] == pytest.approx(3 / 4)
    # Percentiles by training pairs: b2 and b3 (none) 2/8, b1 (one) 5/8, b0 (two) 7/8.
    assert figures["popularity_percentile@2"] == pytest.approx((2 / 8 + 2 / 8 + 5 / 8 + 2 / 8) / 4)
    # b2 and b3 share nothing (distance 1); b1 and b3 share i1 of {i0, i1, i2} (distance 2/3).
    assert figures["diversity@2"] == pytest.approx((1 + 2 / 3) / 2)


def test_lists_need_at_least_two_bundles(data: BundleRecData) -> None:
    with pytest.raises(ValueError, match="k must lie"):
        beyond_accuracy(FixedScores([[0, 0, 0, 0]] * 3), data, data.test, k=1)
