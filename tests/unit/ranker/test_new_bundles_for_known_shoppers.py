"""Specification: a bundle the store syncs after the served model was trained reaches the shoppers the
model knows at once, scored by the model from its items, among the bundles the model ranks (the
scoring itself: tests/unit/offline/test_new_bundles_served.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from services.ranker.domain import BundleInfo, ItemInfo, PolicyParams, UserSignals
from services.ranker.models import ServedModel, ServedNewBundles, served_item_terms
from services.ranker.recommender import Recommender
from shared.store.model_registry import ItemTermsArtifact, ModelVersion, NewBundleVectors
from tests.unit.ranker.in_memory_shop import InMemoryShop

CATALOG = "outdoor"
GREEDY = PolicyParams(version=1, temperature=0.0, ctr_weight=0.0)
ITEM_IDS = ("tent", "stove", "lamp", "rope")


def item(item_id: str) -> ItemInfo:
    return ItemInfo(item_id, f"Title of {item_id}", 10.0, "", False)


def bundle(bundle_id: str, *items: str) -> BundleInfo:
    return BundleInfo(bundle_id, bundle_id, items, None, None, False, 1, "catalog")


def trained_model(new_bundles: bool = True) -> ServedModel:
    """Trained on "camp" (tent, stove) and "climb" (rope); one member of 1 column per view and a prior.
    The shopper's vector [1, 1, 1] scores camp 0.5, climb 0.4; the lamp's item vector is 2."""
    terms = ItemTermsArtifact(0.0, 0.0, ITEM_IDS, np.array([0, 0, 1], np.int32), np.array([0, 1, 3], np.int32))
    vectors = NewBundleVectors(np.array([[0.1], [0.1], [2.0], [0.1]], np.float32), (1.0,), prior=0.0)
    served_terms = served_item_terms(terms, ("camp", "climb"))
    return ServedModel(
        version=ModelVersion("crossview_item_terms", CATALOG, 3, "file:///models/outdoor.npz", {}),
        user_rows={"hiker": 0},
        bundle_ids=("camp", "climb"),
        user_vectors=np.array([[1.0, 1.0, 1.0]], np.float32),
        bundle_vectors=np.array([[0.25, 0.25, 0.0], [0.2, 0.2, 0.0]], np.float32),
        item_terms=served_terms,
        new_bundles=ServedNewBundles(vectors) if new_bundles else None,
    )


class Served:
    def __init__(self, model: ServedModel) -> None:
        self.model = model

    def get(self, catalog_id: str) -> ServedModel | None:
        return self.model if catalog_id == CATALOG else None


class Fixed:
    def current(self, catalog_id: str) -> PolicyParams:
        return GREEDY


def shop(*extra: BundleInfo) -> InMemoryShop:
    bundles = {b.bundle_id: b for b in (bundle("camp", "tent", "stove"), bundle("climb", "rope"), *extra)}
    hiker = UserSignals(("lamp",), frozenset(), (), history_item_ids=("lamp",))
    return InMemoryShop(bundles, {i: item(i) for i in ITEM_IDS}, hiker)


def ranked(model: ServedModel, store: InMemoryShop, copy_in_process: bool = False) -> list[tuple[str, float, str]]:
    recommender = Recommender(store, Fixed(), Served(model), live_bundles=store if copy_in_process else None)
    answer = recommender.recommend(CATALOG, "hiker", 3, request_id="r")
    return [(r.bundle.bundle_id, round(r.score, 4), r.explanation) for r in answer.bundles]


def test_a_bundle_synced_after_training_that_holds_the_shoppers_items_is_scored_from_them() -> None:
    # "night": lamp and stove, mean item vector 1.05: bundle view 1.0 (unit direction), item view 1.05.
    answer = ranked(trained_model(), shop(bundle("night", "lamp", "stove")))

    assert [(b, score) for b, score, _ in answer] == [("night", 2.05), ("camp", 0.5), ("climb", 0.4)]
    assert "lamp" in answer[0][2].lower()


def test_without_the_catalog_copy_a_synced_bundle_sharing_nothing_with_the_shopper_is_not_a_candidate() -> None:
    answer = ranked(trained_model(), shop(bundle("night", "lamp", "stove"), bundle("far", "rope", "tent")))

    assert [b for b, _, _ in answer] == ["night", "camp", "climb"]


def test_with_the_catalog_copy_every_synced_bundle_is_a_candidate_by_its_vector() -> None:
    # A shopper of the tent alone; "beacon" (lamp, rope) shares nothing with them, but its mean item
    # vector 1.05 scores 1.0 + 1.05 with theirs.
    tent_only = UserSignals(("tent",), frozenset(), (), history_item_ids=("tent",))
    store = replace(shop(bundle("beacon", "lamp", "rope")), signals=tent_only)

    with_copy = ranked(trained_model(), store, copy_in_process=True)
    without = ranked(trained_model(), store)

    assert [(b, score) for b, score, _ in with_copy] == [("beacon", 2.05), ("camp", 0.5), ("climb", 0.4)]
    assert [b for b, _, _ in without] == ["camp", "climb"]


def test_a_model_without_new_bundle_vectors_still_ranks_a_synced_bundle_by_its_item_terms() -> None:
    # No vector (score 0) and zero-weight terms: it comes after every bundle the vectors like.
    answer = ranked(trained_model(new_bundles=False), shop(bundle("night", "lamp", "stove")))

    assert [(b, score) for b, score, _ in answer] == [("camp", 0.5), ("climb", 0.4), ("night", 0.0)]
