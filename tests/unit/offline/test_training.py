"""Specification of training: models learn the planted clusters, and checkpoints resume exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from services.ranker.offline.baselines import ItemScorer, ItemScorerConfig, PopularityScorer
from services.ranker.offline.data import BundleRecData, bundle_rec_data
from services.ranker.offline.evaluation import evaluate
from services.ranker.offline.models import (
    BundleModel,
    CrossViewConfig,
    CrossViewModel,
    LightGCN,
    LightGCNConfig,
    MatrixFactorization,
    MatrixFactorizationConfig,
)
from services.ranker.offline.training import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    CheckpointMismatchError,
    NegativeSampler,
    TrainingConfig,
    load_best,
    train,
)
from tests.unit.offline.synthetic_bundles import (
    CHANCE_RECALL_AT_10,
    N_BUNDLES,
    N_ITEMS,
    N_USERS,
    synthetic_data,
    synthetic_pairs,
)

# Small batches and a large learning rate, so a few epochs on the tiny dataset are enough.
FAST = TrainingConfig(epochs=8, batch_size=32, learning_rate=0.02, weight_decay=0.0, seed=1)


class RandomScores:
    def __init__(self, n_bundles: int, seed: int) -> None:
        self.n_bundles = n_bundles
        self.generator = torch.Generator().manual_seed(seed)

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return torch.rand(users.numel(), self.n_bundles, generator=self.generator)


@pytest.fixture(scope="module")
def data() -> BundleRecData:
    return synthetic_data()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cross_view(data: BundleRecData, seed: int = 0) -> CrossViewModel:
    torch.manual_seed(seed)
    return CrossViewModel(data, CrossViewConfig(dim=16, edge_dropout=0.2))


def test_random_scores_reach_the_chance_level_through_the_harness(data: BundleRecData) -> None:
    draws = [evaluate(RandomScores(data.n_bundles, seed), data.test).metrics["recall@10"] for seed in range(20)]
    # 1,920 user draws: the standard error of the mean is about 0.008.
    assert sum(draws) / len(draws) == pytest.approx(CHANCE_RECALL_AT_10, abs=0.03)


def test_cooccurrence_baseline_finds_the_clusters(data: BundleRecData) -> None:
    scorer = ItemScorer(data, ItemScorerConfig(size_exponent=0.0))
    recall = evaluate(scorer, data.test).metrics["recall@10"]
    # Only bundles of the user's cluster can share items with the user.
    assert recall > CHANCE_RECALL_AT_10 + 0.3


def test_popularity_has_no_taste_for_clusters(data: BundleRecData) -> None:
    recall = evaluate(PopularityScorer(data), data.test).metrics["recall@10"]
    assert recall < 0.4


@pytest.mark.parametrize(
    "build",
    [
        cross_view,
        lambda d: LightGCN(d, LightGCNConfig(dim=16, layers=2)),
        lambda d: MatrixFactorization(d, MatrixFactorizationConfig(dim=16)),
    ],
    ids=["crossview", "lightgcn", "mf_bpr"],
)
def test_a_few_epochs_lower_the_loss_and_beat_random(data: BundleRecData, build: object) -> None:
    torch.manual_seed(0)
    model: BundleModel = build(data)  # type: ignore[operator]
    outcome = train(model, data, FAST)
    losses = [record.bpr for record in outcome.history]
    assert losses[-1] < losses[0]
    assert evaluate(model.scorer(), data.test).metrics["recall@10"] > CHANCE_RECALL_AT_10 + 0.3


def test_bundles_never_trained_on_are_recommended_from_their_items() -> None:
    pairs = synthetic_pairs()
    cold = {bundle for _, bundle in pairs["test"]}
    cold_data = bundle_rec_data(
        N_USERS,
        N_BUNDLES,
        N_ITEMS,
        train=[(user, bundle) for user, bundle in pairs["train"] if bundle not in cold],
        tune=[(user, bundle) for user, bundle in pairs["tune"] if bundle not in cold],
        test=pairs["test"],
        user_item=pairs["user_item"],
        bundle_item=pairs["bundle_item"],
    )
    model = cross_view(cold_data)
    train(model, cold_data, FAST)

    scorer = model.scorer()
    dim = model.config.dim
    bundle_view, item_view = scorer.bundle_vectors[:, :dim], scorer.bundle_vectors[:, dim:]
    cold_ids = torch.tensor(sorted(cold))
    pairs_per_bundle = torch.bincount(cold_data.train_pairs[:, 1], minlength=N_BUNDLES)
    least_known = pairs_per_bundle == pairs_per_bundle[pairs_per_bundle > 0].min()
    # A cold bundle's bundle-view vector points where its items do, as long as the least-known
    # trained bundles' vectors.
    cosine = torch.nn.functional.cosine_similarity(bundle_view[cold_ids], item_view[cold_ids])
    assert torch.allclose(cosine, torch.ones_like(cosine), atol=1e-5)
    assert torch.allclose(bundle_view[cold_ids].norm(dim=1), bundle_view[least_known].norm(dim=1).mean(), rtol=1e-4)
    # So the held-out bundles, none of them in training, are found among all bundles, warm ones
    # included: 0.58 here, against 0.43 when cold bundles keep their untrained bundle-view vectors.
    assert evaluate(scorer, cold_data.test).metrics["recall@10"] > 0.5


def test_cross_view_loss_has_both_terms(data: BundleRecData) -> None:
    model = cross_view(data)
    users, positives = data.train_pairs[:8, 0], data.train_pairs[:8, 1]
    negatives = NegativeSampler(data.train_pairs, data.n_bundles).sample(users, torch.Generator().manual_seed(0))
    terms = model.training_loss(users, positives, negatives, torch.Generator().manual_seed(0))
    total, bpr, contrastive = (float(term.detach()) for term in (terms.total, terms.bpr, terms.contrastive))
    assert total == pytest.approx(bpr + 0.04 * contrastive, rel=1e-6)
    assert contrastive > 0


def test_negatives_are_never_training_pairs(data: BundleRecData) -> None:
    sampler = NegativeSampler(data.train_pairs, data.n_bundles)
    users = data.train_pairs[:, 0].repeat(20)
    negatives = sampler.sample(users, torch.Generator().manual_seed(0))
    assert not bool(sampler.is_training_pair(users, negatives).any())
    assert bool(sampler.is_training_pair(data.train_pairs[:, 0], data.train_pairs[:, 1]).all())


def test_the_best_tune_epoch_is_kept_and_checkpointed(data: BundleRecData, tmp_path: Path) -> None:
    model = cross_view(data)
    outcome = train(model, data, FAST, tmp_path)
    best = max(outcome.history, key=lambda record: record.tune["recall@20"])
    assert outcome.best_epoch == min(r.epoch for r in outcome.history if r.tune["recall@20"] == best.tune["recall@20"])
    assert evaluate(model.scorer(), data.tune).metrics == outcome.best_tune
    assert load_best(cross_view(data, seed=99), tmp_path) == outcome.best_epoch


def test_resuming_from_the_last_checkpoint_equals_an_uninterrupted_run(data: BundleRecData, tmp_path: Path) -> None:
    config = TrainingConfig(epochs=3, batch_size=32, learning_rate=0.02, seed=5)
    uninterrupted = train(cross_view(data), data, config, tmp_path / "whole")

    interrupted_dir = tmp_path / "interrupted"
    first_part = train(cross_view(data), data, TrainingConfig(**{**config.__dict__, "epochs": 2}), interrupted_dir)
    assert first_part.epochs_trained == 2
    # A differently initialised model: everything must come from the checkpoint.
    resumed = train(cross_view(data, seed=123), data, config, interrupted_dir)

    assert resumed.resumed_after_epoch == 2
    assert resumed.epochs_trained == 3
    assert [r.loss for r in resumed.history] == [r.loss for r in uninterrupted.history]
    assert [r.tune for r in resumed.history] == [r.tune for r in uninterrupted.history]
    whole = torch.load(tmp_path / "whole" / LAST_CHECKPOINT, weights_only=True)["model"]
    again = torch.load(interrupted_dir / LAST_CHECKPOINT, weights_only=True)["model"]
    assert whole.keys() == again.keys()
    assert all(torch.equal(whole[name], again[name]) for name in whole)
    assert (interrupted_dir / BEST_CHECKPOINT).is_file()


def test_a_finished_run_resumes_to_its_result_without_training(data: BundleRecData, tmp_path: Path) -> None:
    config = TrainingConfig(epochs=2, batch_size=32, learning_rate=0.02, seed=5)
    first = train(cross_view(data), data, config, tmp_path)
    model = cross_view(data, seed=77)
    again = train(model, data, config, tmp_path)
    assert again.history == first.history
    assert evaluate(model.scorer(), data.tune).metrics == first.best_tune


def test_a_checkpoint_of_another_configuration_is_refused(data: BundleRecData, tmp_path: Path) -> None:
    train(cross_view(data), data, TrainingConfig(epochs=1, batch_size=32, seed=5), tmp_path)
    with pytest.raises(CheckpointMismatchError, match="use another run folder"):
        train(cross_view(data), data, TrainingConfig(epochs=2, batch_size=64, seed=5), tmp_path)


def test_epochs_are_selected_on_the_tune_view_of_the_scorer(data: BundleRecData) -> None:
    """A view that replaces the model by seeded random scores: the tune metrics, and so the
    selection, are those of the view, not of the model."""
    views = 0

    def random_view(scorer: object) -> RandomScores:
        nonlocal views
        views += 1
        return RandomScores(N_BUNDLES, seed=views)

    outcome = train(cross_view(data), data, TrainingConfig(epochs=3, batch_size=32, seed=2), tune_view=random_view)

    expected = [evaluate(RandomScores(N_BUNDLES, seed=epoch), data.tune).metrics for epoch in (1, 2, 3)]
    assert [record.tune for record in outcome.history] == expected
    assert outcome.best_tune == max(expected, key=lambda tune: tune["recall@20"])
