"""The Youshu item-level terms: every shopper's counts (the formulas are specified in
tests/unit/ranker/test_item_terms.py), the scorer adding them, and the model served from a choice."""

from __future__ import annotations

import pytest
import torch

from services.ranker.offline.data import BundleRecData, bundle_rec_data
from services.ranker.offline.evaluation import EmbeddingScorer
from services.ranker.offline.results import RunResult
from services.ranker.offline.youshu_item_overlap import served_run_result
from services.ranker.offline.youshu_item_terms import (
    ItemTermsScorer,
    item_terms,
    measure_seed,
    served_model,
    view_weighted,
)
from tests.unit.offline.synthetic_bundles import synthetic_data

# Bundle 0 = items {0, 1}, bundle 1 = {1, 2, 3, 4}, bundle 2 = {5}.
BUNDLE_ITEMS = [(0, 0), (0, 1), (1, 1), (1, 2), (1, 3), (1, 4), (2, 5)]


def data() -> BundleRecData:
    return bundle_rec_data(
        2,
        3,
        6,
        train=[(0, 0), (1, 2)],
        tune=[(0, 1)],
        test=[(1, 1)],
        user_item=[(0, 1), (0, 2), (0, 5), (0, 4), (1, 5)],
        bundle_item=BUNDLE_ITEMS,
    )


# The trained vectors as they are: view share 1, no term.
VECTORS_AS_TRAINED = {"bundle_view_share": 1.0, "overlap_weight": 0.0, "related_weight": 0.0}


def random_members(data: BundleRecData, seed: int) -> list[EmbeddingScorer]:
    """One member of random 4-d vectors: a model that learned nothing."""
    generator = torch.Generator().manual_seed(seed)
    return [
        EmbeddingScorer(
            torch.randn(data.n_users, 4, generator=generator), torch.randn(data.n_bundles, 4, generator=generator)
        )
    ]


def test_item_overlap_counts_the_shoppers_items_in_the_bundle_over_both_sizes() -> None:
    overlap, _ = item_terms(data())

    # Shopper 0 has 4 items, of which bundle 0 holds 1 (of 2), bundle 1 holds 3 (of 4), bundle 2 holds 1 (of 1).
    assert overlap[0].tolist() == pytest.approx([1 / (2 * 2**0.5), 3 / (2 * 2), 1 / 2])
    assert overlap[1].tolist() == pytest.approx([0.0, 0.0, 1.0])


def test_related_bundles_sum_the_item_overlap_with_the_shoppers_training_bundles() -> None:
    _, related = item_terms(data())

    # Shopper 0 trained on bundle 0, which shares item 1 with bundle 1: 1 / sqrt(2 * 4); itself excluded.
    assert related[0].tolist() == pytest.approx([0.0, 1 / 8**0.5, 0.0])
    # Shopper 1 trained on bundle 2, which shares nothing.
    assert related[1].tolist() == pytest.approx([0.0, 0.0, 0.0])


def test_the_scorer_adds_each_weighted_term_and_the_prior_to_the_model_score() -> None:
    model = EmbeddingScorer(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]))
    overlap = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    related = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    prior = torch.tensor([0.0, 0.0, 0.5])

    scores = ItemTermsScorer(model, overlap, 2.0, related, 10.0, prior).score_users(torch.tensor([0, 1]))

    assert scores.tolist() == [[1.0 + 2.0, 0.0, 3.0 + 10.0 + 0.5], [0.0, 2.0 + 2.0, 3.0 + 0.5]]


def test_view_weighting_scales_the_bundle_view_by_a_and_the_item_view_by_two_minus_a() -> None:
    # Columns: bundle view (first half), item view (second half).
    scorer = EmbeddingScorer(torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 3.0]]))

    assert view_weighted(scorer, 0.5).score_users(torch.tensor([0])).tolist() == [[0.5 * 2.0 + 1.5 * 3.0]]
    assert view_weighted(scorer, 1.0).score_users(torch.tensor([0])).tolist() == [[5.0]]


def test_each_choice_is_the_best_on_tune_of_its_metric_and_the_model_alone_adds_no_term() -> None:
    synthetic = synthetic_data()
    members = random_members(synthetic, seed=3)

    figures = measure_seed(synthetic, *item_terms(synthetic), members)

    alone, by_recall, by_ndcg = (figures[name] for name in ("model_alone", "chosen_by_recall", "chosen_by_ndcg"))
    assert alone["chosen_on_tune"]["overlap_weight"] == alone["chosen_on_tune"]["related_weight"] == 0.0
    assert by_recall["tune"]["recall@20"] >= alone["tune"]["recall@20"]
    assert by_ndcg["tune"]["ndcg@20"] >= by_recall["tune"]["ndcg@20"]
    # Shoppers' items and bundles share a taste cluster, so the exact terms find what random vectors miss.
    assert by_recall["test"]["recall@20"] > alone["test"]["recall@20"] + 0.2


def test_the_served_model_scores_as_the_chosen_scorer_with_its_terms_beside() -> None:
    synthetic = synthetic_data()
    members = random_members(synthetic, seed=5)
    overlap, related = item_terms(synthetic)
    choice = {
        "bundle_view_share": 0.7,
        "overlap_weight": 4.0,
        "related_weight": 1.0,
        "popularity_weight": 0.5,
        "new_bundle_boost": 0.0,
    }
    pairs = torch.bincount(synthetic.train_pairs[:, 1], minlength=synthetic.n_bundles)
    chosen = ItemTermsScorer(
        EmbeddingScorer.summed([view_weighted(m, 0.7) for m in members]),
        overlap,
        4.0,
        related,
        1.0,
        0.5 * torch.log1p(pairs.to(torch.float32)),
    )
    users = torch.arange(synthetic.n_users)

    vectors, weights = served_model(synthetic, members, choice)

    served = vectors.score_users(users) + weights.overlap * overlap + weights.related * related
    assert torch.allclose(served, chosen.score_users(users), atol=1e-5)


def test_the_served_variant_is_reported_as_a_run_of_its_own_beside_the_trained_one() -> None:
    synthetic = synthetic_data()
    members = random_members(synthetic, seed=7)
    terms = item_terms(synthetic)
    figures = measure_seed(synthetic, *terms, members)
    trained = RunResult("youshu", "standard", "crossview", 0, {"dim": 4}, {}, {}, 600.0, 1, "cpu", best_epoch=9)

    run = served_run_result(synthetic, members, terms, figures, trained, seconds=30.0)

    assert (run.model, run.seed, run.best_epoch) == ("crossview_item_terms", 0, 9)
    assert run.seconds == 630.0
    assert run.selected_on_tune == figures["chosen_by_ndcg"]["chosen_on_tune"]
    assert run.tune == figures["chosen_by_ndcg"]["tune"]
    assert run.test["recall@20"] == figures["chosen_by_ndcg"]["test"]["recall@20"]
    assert {"coverage@20", "popularity_percentile@20", "diversity@20"} <= set(run.test)
    assert run.hyperparameters["dim"] == 4


def test_the_new_bundle_boost_is_folded_into_the_served_vectors_like_the_popularity_prior() -> None:
    small = data()  # bundle 1 has no training pair
    members = random_members(small, seed=11)
    choice = {**VECTORS_AS_TRAINED, "popularity_weight": 0.5, "new_bundle_boost": 10.0}
    users = torch.arange(small.n_users)

    vectors, _ = served_model(small, members, choice)

    added = vectors.score_users(users) - members[0].score_users(users)
    expected = 0.5 * torch.log1p(torch.tensor([1.0, 0.0, 1.0])) + torch.tensor([0.0, 10.0, 0.0])
    assert torch.allclose(added, expected.expand(small.n_users, -1), atol=1e-5)
