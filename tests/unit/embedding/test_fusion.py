"""The item fusion: how an item's document is written, what untrained and trained weights do, and
the artifact's round trip, version and encoder check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.embedding.fusion import FusionMetadata, FusionMismatch, ItemFusion, item_document

TEXT_DIM, IMAGE_DIM = 8, 12
METADATA = FusionMetadata(text_model_version="text@1", image_model_version="image@1")


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.normal(size=(n, dim)).astype(np.float32)
    unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit


def random_fusion(seed: int = 0, rank: int = 3) -> ItemFusion:
    rng = np.random.default_rng(seed)
    return ItemFusion(
        rng.normal(size=(rank, TEXT_DIM)).astype(np.float32),
        rng.normal(size=(TEXT_DIM, rank)).astype(np.float32),
        rng.normal(size=(rank, IMAGE_DIM)).astype(np.float32),
        rng.normal(size=(TEXT_DIM, rank)).astype(np.float32),
        METADATA,
    )


def test_an_items_document_is_its_title_then_up_to_two_category_paths_then_its_description() -> None:
    assert item_document("  Tripod  ") == "Tripod"
    assert (
        item_document("Tripod", ["Electronics > Camera", "", "Sports > Outdoor", "Home"], " Light, 1.2 kg ")
        == "Tripod | Electronics > Camera ; Sports > Outdoor | Light, 1.2 kg"
    )
    assert item_document("Tripod", [], "Light") == "Tripod | Light"


def test_an_untrained_fusion_gives_the_text_vector_and_ignores_images() -> None:
    rng = np.random.default_rng(1)
    text, image = unit_rows(rng, 5, TEXT_DIM), unit_rows(rng, 5, IMAGE_DIM)
    fusion = ItemFusion.untrained(TEXT_DIM, IMAGE_DIM, METADATA)

    np.testing.assert_allclose(fusion.fuse(text), text, atol=1e-6)
    np.testing.assert_allclose(fusion.fuse(text, image), text, atol=1e-6)


def test_the_image_moves_only_the_items_that_have_one() -> None:
    rng = np.random.default_rng(2)
    text, image = unit_rows(rng, 4, TEXT_DIM), unit_rows(rng, 4, IMAGE_DIM)
    fusion = random_fusion()
    has_image = np.array([True, False, True, False])

    fused = fusion.fuse(text, image, has_image)

    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-6)
    text_only = fusion.fuse(text)
    np.testing.assert_allclose(fused[~has_image], text_only[~has_image], atol=1e-6)
    assert np.all(np.abs(fused[has_image] - text_only[has_image]).max(axis=1) > 1e-3)
    # With every image given, the mask may be left out.
    np.testing.assert_allclose(fusion.fuse(text, image), fusion.fuse(text, image, np.ones(4, bool)), atol=1e-6)


def test_a_saved_fusion_loads_back_with_the_same_vectors_and_a_version_from_its_weights(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    text, image = unit_rows(rng, 3, TEXT_DIM), unit_rows(rng, 3, IMAGE_DIM)
    fusion = random_fusion(seed=4)

    version = fusion.save(tmp_path / "fusion.npz")
    loaded = ItemFusion.load(tmp_path / "fusion.npz")

    assert loaded.version == version == fusion.version
    assert version.startswith("item-fusion@")
    assert len(version) == len("item-fusion@") + 12
    assert loaded.metadata == METADATA
    np.testing.assert_array_equal(loaded.fuse(text, image), fusion.fuse(text, image))
    assert random_fusion(seed=4).save(tmp_path / "again.npz") == version  # same weights, same version
    other = random_fusion(seed=5).save(tmp_path / "other.npz")
    assert other != version
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "again.npz",
        "fusion.npz",
        "other.npz",
    ]  # no partial file left


def test_loading_what_is_not_a_fusion_says_so_and_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train_item_fusion"):
        ItemFusion.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "vectors.npz", vectors=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="is not an item fusion artifact"):
        ItemFusion.load(tmp_path / "vectors.npz")


def test_inconsistent_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="inconsistent fusion shapes"):
        ItemFusion(
            np.zeros((3, TEXT_DIM), np.float32),
            np.zeros((TEXT_DIM + 1, 3), np.float32),
            np.zeros((3, IMAGE_DIM), np.float32),
            np.zeros((TEXT_DIM, 3), np.float32),
            METADATA,
        )


def test_a_fusion_refuses_encoders_it_was_not_trained_on_but_takes_their_int8_form() -> None:
    fusion = random_fusion()

    fusion.check_encoders("text@1", "image@1")
    fusion.check_encoders("text@1+int8", "image@1")
    fusion.check_encoders("text@1", None)
    with pytest.raises(FusionMismatch, match=r"trained on text vectors of text@1.*retrain it"):
        fusion.check_encoders("text@2", "image@1")
    with pytest.raises(FusionMismatch, match="trained on image vectors of image@1"):
        fusion.check_encoders("text@1", "image@2")
