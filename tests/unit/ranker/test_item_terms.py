"""The item-level terms a served model adds to its dot products: exact counts on hand-computed cases,
and an artifact that carries them scoring in the ranker as it was saved (the artifact file itself:
tests/unit/shared/test_model_artifacts.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.ranker.item_terms import BundleContents, ItemTermWeights, UnlistedBundles
from services.ranker.models import ServedModel, load_served
from shared.store.model_registry import ItemTermsArtifact, ModelArtifact, ModelVersion, save_artifact

# Bundle 0 = items {0, 1}, bundle 1 = {1, 2, 3, 4}, bundle 2 = {5}, bundle 3 = {} (no item known).
ROWS = np.array([0, 0, 1, 1, 1, 1, 2])
COLUMNS = np.array([0, 1, 1, 2, 3, 4, 5])
CONTENTS = BundleContents(ROWS, COLUMNS, n_bundles=4, n_items=6)


def columns(*ids: int) -> np.ndarray:
    return np.array(ids, dtype=np.int64)


def test_item_overlap_counts_the_shoppers_items_in_the_bundle_over_both_sizes() -> None:
    # 4 items: bundle 0 holds 1 of its 2, bundle 1 holds 3 of its 4, bundle 2 its only one.
    overlap = CONTENTS.overlap(columns(1, 2, 4, 5), item_count=4)

    assert overlap.tolist() == pytest.approx([1 / (2 * 2**0.5), 3 / (2 * 2), 1 / 2, 0.0])


def test_items_outside_the_columns_count_in_the_shoppers_size_only() -> None:
    # Item 5 of a shopper with 4 items, 3 of which no bundle of the model holds.
    assert CONTENTS.overlap(columns(5), item_count=4).tolist() == pytest.approx([0.0, 0.0, 1 / 2, 0.0])


def test_related_bundles_sum_the_overlap_with_each_bought_bundle_but_never_with_itself() -> None:
    # Bundle 0 shares item 1 with bundle 1 (1 / sqrt(2 * 4)); bundle 2 shares nothing; over sqrt(2 bought).
    related = CONTENTS.related(columns(0, 2), bundle_count=2)

    assert related.tolist() == pytest.approx([0.0, 1 / 8**0.5 / 2**0.5, 0.0, 0.0])


def test_a_bought_bundle_without_items_relates_to_nothing() -> None:
    assert CONTENTS.related(columns(3), bundle_count=1).tolist() == [0.0, 0.0, 0.0, 0.0]


def test_a_pair_listed_twice_counts_once() -> None:
    doubled = BundleContents(np.append(ROWS, 0), np.append(COLUMNS, 1), n_bundles=4, n_items=6)

    assert doubled.overlap(columns(1), 1).tolist() == CONTENTS.overlap(columns(1), 1).tolist()


def test_scores_weigh_each_term_and_a_shopper_with_nothing_scores_zero() -> None:
    weights = ItemTermWeights(overlap=2.0, related=3.0)
    expected = 2.0 * CONTENTS.overlap(columns(1, 2), 2) + 3.0 * CONTENTS.related(columns(0), 1)

    assert CONTENTS.scores(weights, columns(1, 2), 2, columns(0), 1).tolist() == pytest.approx(expected.tolist())
    assert CONTENTS.scores(weights, columns(), 0, columns(), 0).tolist() == [0.0, 0.0, 0.0, 0.0]


def test_a_bundle_synced_after_the_contents_gets_the_terms_it_would_get_if_listed() -> None:
    # The contents without bundle 1 ({1, 2, 3, 4}): its old rows 2 and 3 become 1 and 2.
    listed = ROWS != 1
    without = BundleContents(np.array([0, 0, 1]), COLUMNS[listed], n_bundles=3, n_items=6)
    weights = ItemTermWeights(overlap=2.0, related=3.0)
    # Item 7 is outside the columns: it counts in the new bundle's size, as for a listed one.
    unlisted = UnlistedBundles.of([["i1", "i2", "i3", "i4"], ["i1", "i7"]], {f"i{c}": c for c in range(6)})
    as_new = without.scores_of_new_bundles(weights, columns(1, 2, 5), 3, columns(0), 1, unlisted)

    as_listed = CONTENTS.scores(weights, columns(1, 2, 5), 3, columns(0), 1)
    assert as_new[0] == pytest.approx(as_listed[1])
    # {1, item 7}: shares item 1 with the shopper (1 / sqrt(3 * 2)) and with bought bundle 0 (1 / sqrt(2 * 2)).
    assert as_new[1] == pytest.approx(2.0 / 6**0.5 + 3.0 / 2)


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf")])
def test_a_weight_must_be_finite_and_not_negative(weight: float) -> None:
    with pytest.raises(ValueError, match="overlap term's weight"):
        ItemTermWeights(overlap=weight, related=0.0)


def test_pairs_outside_the_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="outside 4 bundles x 6 items"):
        BundleContents(np.array([4]), np.array([0]), n_bundles=4, n_items=6)


def artifact_with_terms(overlap: float, related: float) -> ModelArtifact:
    """Two shoppers, four bundles; the vectors prefer bundle 2 for shopper ``u0``."""
    return ModelArtifact(
        model_name="mf_terms",
        catalog_id="shop",
        user_ids=("u0", "u1"),
        bundle_ids=("b0", "b1", "b2", "b3"),
        user_vectors=np.array([[1.0], [0.0]], dtype=np.float32),
        bundle_vectors=np.array([[0.0], [0.1], [0.3], [0.2]], dtype=np.float32),
        item_terms=ItemTermsArtifact(
            overlap_weight=overlap,
            related_weight=related,
            item_ids=tuple(f"i{column}" for column in range(6)),
            pair_bundle_rows=ROWS.astype(np.int32),
            pair_item_columns=COLUMNS.astype(np.int32),
        ),
    )


def serve(artifact: ModelArtifact, directory: Path) -> ServedModel:
    path = save_artifact(artifact, directory)
    return load_served(ModelVersion(artifact.model_name, artifact.catalog_id, 1, path.resolve().as_uri(), {}))


def test_the_served_model_ranks_by_vectors_plus_the_shoppers_item_terms(tmp_path: Path) -> None:
    model = serve(artifact_with_terms(overlap=1.0, related=0.0), tmp_path)

    # Vectors alone: b2 (0.3), b3 (0.2), b1 (0.1), b0 (0.0).
    assert [b for b, _ in model.top_bundles("u0", 4)] == ["b2", "b3", "b1", "b0"]
    # Items 2, 3 and 4 of bundle 1 (and one the model does not know): + 3 / sqrt(4 * 4) lifts b1 first.
    lifted = model.top_bundles("u0", 4, item_ids=["i2", "i3", "i4", "new-item"])
    assert lifted[0][0] == "b1"
    assert lifted[0][1] == pytest.approx(0.1 + 3 / 4)
    assert [b for b, _ in lifted[1:]] == ["b2", "b3", "b0"]


def test_bought_bundles_lift_their_relatives_and_stay_excluded(tmp_path: Path) -> None:
    model = serve(artifact_with_terms(overlap=0.0, related=1.0), tmp_path)

    ranked = model.top_bundles("u0", 3, exclude={"b0"}, bought_bundle_ids={"b0"})

    # b0 shares item 1 with b1: + 1 / sqrt(2 * 4).
    assert ranked[0][0] == "b1"
    assert ranked[0][1] == pytest.approx(0.1 + 1 / 8**0.5)
    assert "b0" not in dict(ranked)


def test_the_bundle_overlaps_are_built_at_load_only_for_a_model_that_weighs_related_bundles(tmp_path: Path) -> None:
    # Youshu's overlaps take about 37 MB and 1-2 s: built before the first request, or never.
    weighed = serve(artifact_with_terms(overlap=1.0, related=1.0), tmp_path / "weighed")
    unweighed = serve(artifact_with_terms(overlap=1.0, related=0.0), tmp_path / "unweighed")

    assert weighed.item_terms is not None
    assert unweighed.item_terms is not None
    assert weighed.item_terms.contents.related_ready
    assert not unweighed.item_terms.contents.related_ready
    unweighed.top_bundles("u0", 4, item_ids=["i2"], bought_bundle_ids={"b0"})
    assert not unweighed.item_terms.contents.related_ready
