"""Model artifacts on disk: what a trainer saves is what a ranker loads, item-level terms included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.store.model_registry import ItemTermsArtifact, ModelArtifact, load_artifact, save_artifact

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


def test_terms_naming_a_bundle_or_item_the_artifact_lacks_are_refused() -> None:
    with pytest.raises(ValueError, match=r"item column outside 0\.\.0"):
        artifact(ItemTermsArtifact(1.0, 1.0, ("i0",), ROWS, COLUMNS))
    with pytest.raises(ValueError, match=r"bundle row outside 0\.\.1"):
        artifact(ItemTermsArtifact(1.0, 1.0, ("i0", "i1"), ROWS + 1, COLUMNS))


def test_a_saved_artifact_is_readable_by_rankers_running_as_another_user(tmp_path: Path) -> None:
    path = save_artifact(with_terms(1.0, 1.0), tmp_path)

    assert path.stat().st_mode & 0o777 == 0o644
