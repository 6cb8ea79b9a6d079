"""Model artifacts on disk: what a trainer saves is what a ranker loads, item-level terms and
new-bundle vectors included."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from shared.store.model_registry import (
    ItemTermsArtifact,
    ModelArtifact,
    NewBundleVectors,
    load_artifact,
    save_artifact,
)

# Bundle 0 holds items 0 and 1, bundle 1 item 1.
ROWS = np.array([0, 0, 1], dtype=np.int32)
COLUMNS = np.array([0, 1, 1], dtype=np.int32)


def artifact(terms: ItemTermsArtifact | None) -> ModelArtifact:
    return ModelArtifact(
        model_name="mf",
        catalog_id="shop",
        user_ids=("u0",),
        bundle_ids=("b0", "b1"),
        user_vectors=np.array([[1.0, 0.5]], dtype=np.float32),
        bundle_vectors=np.array([[0.2, 0.1], [0.3, 0.4]], dtype=np.float32),
        item_terms=terms,
    )


def with_terms(overlap: float, related: float) -> ModelArtifact:
    return artifact(ItemTermsArtifact(overlap, related, ("i0", "i1"), ROWS, COLUMNS))


def test_an_artifact_keeps_its_vectors_and_item_terms_through_save_and_load(tmp_path: Path) -> None:
    saved = with_terms(1.5, 0.5)

    loaded = load_artifact(save_artifact(saved, tmp_path))

    assert (loaded.user_ids, loaded.bundle_ids) == (saved.user_ids, saved.bundle_ids)
    assert loaded.bundle_vectors.tolist() == saved.bundle_vectors.tolist()
    assert loaded.item_terms is not None
    assert (loaded.item_terms.overlap_weight, loaded.item_terms.related_weight) == (1.5, 0.5)
    assert loaded.item_terms.item_ids == ("i0", "i1")
    assert loaded.item_terms.pair_bundle_rows.tolist() == ROWS.tolist()
    assert loaded.item_terms.pair_item_columns.tolist() == COLUMNS.tolist()


def test_an_artifact_without_terms_is_still_the_first_format(tmp_path: Path) -> None:
    path = save_artifact(artifact(None), tmp_path)

    with np.load(path) as data:
        assert str(data["format"]) == "bundlewise-embedding-scorer-v1"
    assert load_artifact(path).item_terms is None


def with_new_bundles(new: NewBundleVectors, columns: int = 5) -> ModelArtifact:
    """By default one member of 2 columns per view (bundle view, item view) and a prior column."""
    terms = ItemTermsArtifact(1.0, 0.0, ("i0", "i1"), ROWS, COLUMNS)
    return ModelArtifact(
        model_name="crossview",
        catalog_id="shop",
        user_ids=("u0",),
        bundle_ids=("b0", "b1"),
        user_vectors=np.ones((1, columns), dtype=np.float32),
        bundle_vectors=np.zeros((2, columns), dtype=np.float32),
        item_terms=terms,
        new_bundles=new,
    )


def test_new_bundle_vectors_survive_save_and_load_as_the_third_format(tmp_path: Path) -> None:
    item_vectors = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)

    path = save_artifact(with_new_bundles(NewBundleVectors(item_vectors, (1.25,), prior=2.0)), tmp_path)

    loaded = load_artifact(path).new_bundles
    with np.load(path) as data:
        assert str(data["format"]) == "bundlewise-embedding-scorer-v3"
    assert loaded is not None
    assert loaded.item_vectors.tolist() == item_vectors.tolist()
    assert (loaded.bundle_view_lengths, loaded.prior, loaded.member_dim) == ((1.25,), 2.0, 2)


def test_new_bundle_vectors_without_a_prior_stay_without_one(tmp_path: Path) -> None:
    # Two members of 1 column per view: 4 columns, no prior.
    new = NewBundleVectors(np.ones((2, 2), dtype=np.float32), (1.0, 1.0), prior=None)

    loaded = load_artifact(save_artifact(with_new_bundles(new, columns=4), tmp_path)).new_bundles

    assert loaded is not None
    assert (loaded.prior, loaded.members, loaded.member_dim) == (None, 2, 1)


def test_new_bundle_vectors_that_do_not_fit_the_model_are_refused() -> None:
    with pytest.raises(ValueError, match="item vectors make 9"):
        with_new_bundles(NewBundleVectors(np.ones((2, 4), dtype=np.float32), (1.0,), prior=0.0))
    with pytest.raises(ValueError, match="expected 2 rows"):
        with_new_bundles(NewBundleVectors(np.ones((3, 2), dtype=np.float32), (1.0,), prior=0.0))
    with pytest.raises(ValueError, match="no item terms"):
        replace(with_new_bundles(NewBundleVectors(np.ones((2, 2), dtype=np.float32), (1.0,), 0.0)), item_terms=None)


def test_terms_naming_a_bundle_or_item_the_artifact_lacks_are_refused() -> None:
    with pytest.raises(ValueError, match=r"item column outside 0\.\.0"):
        artifact(ItemTermsArtifact(1.0, 1.0, ("i0",), ROWS, COLUMNS))
    with pytest.raises(ValueError, match=r"bundle row outside 0\.\.1"):
        artifact(ItemTermsArtifact(1.0, 1.0, ("i0", "i1"), ROWS + 1, COLUMNS))


def test_a_saved_artifact_is_readable_by_rankers_running_as_another_user(tmp_path: Path) -> None:
    path = save_artifact(with_terms(1.0, 1.0), tmp_path)

    assert path.stat().st_mode & 0o777 == 0o644
