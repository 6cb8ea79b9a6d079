"""A bundle synced to the catalog after the model was trained reaches the shoppers the model knows:
the ranker scores it from its items exactly as the harness scores a bundle without training pairs
(the cross-view model's cold-bundle vector, the new-bundle boost and the item-level terms)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from services.ranker.models import ServedModel, load_served
from services.ranker.offline.data import BundleRecData, bundle_rec_data
from services.ranker.offline.models import CrossViewConfig, CrossViewModel
from services.ranker.offline.publish import youshu_artifact, youshu_item_terms
from services.ranker.offline.youshu_item_overlap import ranker_test_recall, without_new_bundles
from services.ranker.offline.youshu_item_terms import new_bundle_vectors, served_model
from shared.store.model_registry import ModelArtifact, ModelVersion, save_artifact
from tests.unit.offline.synthetic_bundles import synthetic_pairs

# Bundles with no training pair: the ones a shop would have synced after training.
SYNCED_LATER = {3, 10, 17, 42}
CHOICE = {
    "bundle_view_share": 0.7,
    "overlap_weight": 2.0,
    "related_weight": 1.0,
    "popularity_weight": 0.5,
    "new_bundle_boost": 3.0,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data() -> BundleRecData:
    pairs = synthetic_pairs()
    return bundle_rec_data(
        96,
        80,
        96,
        train=[(user, bundle) for user, bundle in pairs["train"] if bundle not in SYNCED_LATER],
        tune=pairs["tune"],
        test=pairs["test"],
        user_item=pairs["user_item"],
        bundle_item=pairs["bundle_item"],
    )


def members(data: BundleRecData) -> list[CrossViewModel]:
    """Two untrained members: the scoring path is what is checked, not what was learned."""
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(CrossViewModel(data, CrossViewConfig(dim=8)))
    return models


def served_artifact(data: BundleRecData) -> ModelArtifact:
    models = members(data)
    scorer, weights = served_model(data, [model.scorer() for model in models], CHOICE)
    return youshu_artifact(
        scorer, "crossview_item_terms", {}, youshu_item_terms(data, weights), new_bundle_vectors(models, CHOICE)
    )


def serve(artifact: ModelArtifact, directory: Path) -> ServedModel:
    path = save_artifact(artifact, directory)
    return load_served(ModelVersion(artifact.model_name, artifact.catalog_id, 1, path.resolve().as_uri(), {}))


def shopper(data: BundleRecData, user: int) -> tuple[list[str], set[str]]:
    """The shopper's items and bought bundles as the feature store holds them."""
    items = [f"i{item}" for u, item in data.user_item_pairs.tolist() if u == user]
    bought = {f"b{bundle}" for u, bundle in data.train_pairs.tolist() if u == user}
    return items, bought


def test_the_ranker_scores_a_bundle_synced_after_training_as_the_harness_scores_it(
    data: BundleRecData, tmp_path: Path
) -> None:
    artifact = served_artifact(data)
    everything = serve(artifact, tmp_path / "everything")
    stripped, contents = without_new_bundles(artifact, data)
    later = serve(stripped, tmp_path / "later")

    assert set(contents) == {f"b{bundle}" for bundle in SYNCED_LATER}
    assert not any(later.knows_bundle(bundle) for bundle in contents)
    for user in range(0, data.n_users, 7):
        items, bought = shopper(data, user)
        listed = dict(everything.top_bundles(f"u{user}", data.n_bundles, item_ids=items, bought_bundle_ids=bought))
        synced = later.score_new_bundles(f"u{user}", contents, items, bought)
        assert synced == pytest.approx({bundle: listed[bundle] for bundle in contents}, abs=1e-4)
        # The bundles the model lists score as before.
        kept = dict(later.top_bundles(f"u{user}", data.n_bundles, item_ids=items, bought_bundle_ids=bought))
        assert kept == pytest.approx({b: s for b, s in listed.items() if b not in contents}, abs=1e-4)


def test_the_test_recall_is_the_same_whether_the_bundles_were_listed_or_synced_later(
    data: BundleRecData, tmp_path: Path
) -> None:
    artifact = served_artifact(data)
    stripped, contents = without_new_bundles(artifact, data)

    listed = ranker_test_recall(serve(artifact, tmp_path / "everything"), data)
    synced = ranker_test_recall(serve(stripped, tmp_path / "later"), data, new_bundles=contents)

    assert synced == pytest.approx(listed)


def test_a_bundle_of_items_the_model_never_saw_gets_only_its_item_terms(data: BundleRecData, tmp_path: Path) -> None:
    later = serve(without_new_bundles(served_artifact(data), data)[0], tmp_path)
    items, bought = shopper(data, 0)

    scores = later.score_new_bundles("u0", {"fresh": ["new-item-1", "new-item-2"]}, items, bought)

    assert scores == {"fresh": 0.0}
    assert later.score_new_bundles("a-stranger", {"fresh": ["i1"]}) == {}
