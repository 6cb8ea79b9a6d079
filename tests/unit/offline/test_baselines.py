"""Specification of the untrained baselines: exact scores on a hand-built dataset."""

from __future__ import annotations

import math

import pytest
import torch

from services.ranker.offline.baselines import ItemScorer, ItemScorerConfig, PopularityScorer
from services.ranker.offline.data import bundle_rec_data

# 3 users, 3 bundles, 4 items. Bundle 0 = {0, 1}, bundle 1 = {1, 2, 3}, bundle 2 = {3}.
DATA = bundle_rec_data(
    3,
    3,
    4,
    train=[(0, 2), (1, 2), (2, 1)],
    tune=[],
    test=[],
    user_item=[(0, 1), (1, 0), (1, 3)],
    bundle_item=[(0, 0), (0, 1), (1, 1), (1, 2), (1, 3), (2, 3)],
)


def test_popularity_scores_every_user_with_training_counts() -> None:
    scores = PopularityScorer(DATA).score_users(torch.tensor([0, 2]))
    assert scores.tolist() == [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]


def test_cooccurrence_counts_shared_items_over_user_items_and_training_bundles() -> None:
    scorer = ItemScorer(DATA, ItemScorerConfig(size_exponent=0.0, bundle_item_weight=1.0))
    # User 0: own item 1, training bundle 2 gives item 3 -> profile {1: 1, 3: 1}.
    # Bundle 0 shares item 1 (1); bundle 1 shares items 1 and 3 (2); bundle 2 shares item 3 (1).
    assert scorer.score_users(torch.tensor([0])).tolist() == [[1.0, 2.0, 1.0]]


def test_cooccurrence_divides_by_bundle_size_to_the_exponent() -> None:
    scorer = ItemScorer(DATA, ItemScorerConfig(size_exponent=1.0, bundle_item_weight=0.5))
    # User 1: own items 0 and 3, training bundle 2 adds item 3 at 0.5 -> profile {0: 1, 3: 1.5}.
    scores = scorer.score_users(torch.tensor([1]))[0].tolist()
    assert scores == pytest.approx([1 / 2, 1.5 / 3, 1.5 / 1], abs=1e-6)


def test_itemknn_lets_each_item_vote_for_its_most_similar_item() -> None:
    scorer = ItemScorer(DATA, ItemScorerConfig(neighbours=1, size_exponent=0.0, bundle_item_weight=0.0))
    # Items as columns over the contexts (users 0-2, then bundles 0-2): item 1 occurs in user 0,
    # bundles 0 and 1; item 2 only in bundle 1; item 0 in user 1 and bundle 0; item 3 in user 1,
    # bundles 1 and 2. Cosines from item 1: item 2 1/sqrt(3), item 0 1/sqrt(6), item 3 1/3.
    # User 0 owns item 1 (self-similarity 1) and it votes for item 2 with 1/sqrt(3).
    # Bundle 0 {0, 1} -> 1; bundle 1 {1, 2, 3} -> 1 + 1/sqrt(3); bundle 2 {3} -> 0.
    assert scorer.score_users(torch.tensor([0]))[0].tolist() == pytest.approx(
        [1.0, 1 + 1 / math.sqrt(3), 0.0], abs=1e-6
    )
    # User 2 owns no item and gets no score.
    assert scorer.score_users(torch.tensor([2])).tolist() == [[0.0, 0.0, 0.0]]
