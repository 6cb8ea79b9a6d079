"""Training the item fusion: bundle partners come closer, the image half learns what the text lacks,
the text half alone still places an item without an image, and the same seed gives the same
weights; product cards render the same pixels for the same item."""

from __future__ import annotations

import numpy as np
import pytest

from services.embedding.fusion import FusionMetadata, ItemFusion
from services.ranker.offline.completion_data import CompletionBundle, CompletionSplit
from services.ranker.offline.item_fusion_training import FusionConfig, train_fusion
from services.ranker.offline.product_cards import CARD_SIZE, render_card
from services.ranker.offline.train_item_fusion import joint_training_bundles

METADATA = FusionMetadata(text_model_version="text@1", image_model_version="image@1")
N_ITEMS, TEXT_DIM, IMAGE_DIM = 40, 16, 24


def unit(rows: np.ndarray) -> np.ndarray:
    normalised: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return normalised


def partner_cosine(vectors: np.ndarray) -> float:
    """Mean cosine of item i with item i + 20, its bundle partner."""
    return float(np.mean([vectors[i] @ vectors[i + 20] for i in range(20)]))


def bundles() -> list[CompletionBundle]:
    return [CompletionBundle(str(i), (i, i + 20)) for i in range(20)]


def test_training_brings_bundle_partners_closer_from_text_alone() -> None:
    rng = np.random.default_rng(0)
    text, image = unit(rng.normal(size=(N_ITEMS, TEXT_DIM))), unit(rng.normal(size=(N_ITEMS, IMAGE_DIM)))
    config = FusionConfig(rank=8, image_rank=8, epochs=30, batch_size=16, lr=1e-2)

    run = train_fusion(text, image, bundles(), config, seed=0, metadata=METADATA)

    assert run.losses[-1] < 0.8 * run.losses[0]
    assert partner_cosine(run.fusion.fuse(text)) > partner_cosine(text) + 0.2
    assert run.fusion.metadata == METADATA


def test_the_image_half_learns_what_the_text_does_not_say() -> None:
    # Text is noise; partners share an image direction. Only the image can tell who goes with whom.
    rng = np.random.default_rng(1)
    text = unit(rng.normal(size=(N_ITEMS, TEXT_DIM)))
    shared = rng.normal(size=(20, IMAGE_DIM))
    image = unit(np.concatenate([shared, shared]) + 0.1 * rng.normal(size=(N_ITEMS, IMAGE_DIM)))
    config = FusionConfig(rank=2, image_rank=8, epochs=40, batch_size=16, lr=1e-2, weight_decay=0.0)

    fusion = train_fusion(text, image, bundles(), config, seed=0, metadata=METADATA).fusion

    assert partner_cosine(fusion.fuse(text, image)) > partner_cosine(fusion.fuse(text)) + 0.2


def test_an_untrained_image_half_starts_at_zero_so_training_starts_from_the_text_vectors() -> None:
    rng = np.random.default_rng(2)
    text, image = unit(rng.normal(size=(N_ITEMS, TEXT_DIM))), unit(rng.normal(size=(N_ITEMS, IMAGE_DIM)))

    fusion = train_fusion(text, image, bundles(), FusionConfig(epochs=0), seed=0, metadata=METADATA).fusion

    np.testing.assert_allclose(fusion.fuse(text, image), text, atol=1e-6)


def test_the_same_seed_trains_the_same_fusion() -> None:
    rng = np.random.default_rng(3)
    text, image = unit(rng.normal(size=(N_ITEMS, TEXT_DIM))), unit(rng.normal(size=(N_ITEMS, IMAGE_DIM)))
    config = FusionConfig(rank=4, image_rank=4, epochs=2, batch_size=8)

    first = train_fusion(text, image, bundles(), config, seed=5, metadata=METADATA)
    second = train_fusion(text, image, bundles(), config, seed=5, metadata=METADATA)

    assert first.losses == second.losses
    for name in ("text_down", "text_up", "image_down", "image_up"):
        assert np.array_equal(getattr(first.fusion, name), getattr(second.fusion, name))
    assert isinstance(first.fusion, ItemFusion)


def test_domains_trained_together_number_their_items_one_after_the_other() -> None:
    def split(*train: CompletionBundle) -> CompletionSplit:
        return CompletionSplit(seed=0, train_bundles=train, train_sessions=(), tune=(), test=(), left_out_sessions=0)

    joint = joint_training_bundles(
        [split(CompletionBundle("a", (0, 2))), split(CompletionBundle("b", (1, 0), session=7))], [3, 5]
    )

    assert [(b.bundle_id, b.items, b.session) for b in joint] == [("a", (0, 2), None), ("b", (4, 3), 7)]


def test_a_product_card_is_a_square_image_drawn_the_same_every_time_and_differs_by_title() -> None:
    card = render_card("Wireless Bluetooth Headphones with Noise Cancelling", "Headphones")
    again = render_card("Wireless Bluetooth Headphones with Noise Cancelling", "Headphones")
    other = render_card("Leather Hiking Boots", "Boots")

    assert (card.size, card.mode) == ((CARD_SIZE, CARD_SIZE), "RGB")
    assert card.tobytes() == again.tobytes()
    assert card.tobytes() != other.tobytes()
    pixels = np.asarray(card)
    assert (pixels < 128).any()  # dark text
    assert (pixels == 255).mean() > 0.5  # on a mostly white card


def test_with_a_tune_score_the_best_epoch_is_kept_and_the_untrained_fusion_when_training_never_helps() -> None:
    rng = np.random.default_rng(4)
    text, image = unit(rng.normal(size=(N_ITEMS, TEXT_DIM))), unit(rng.normal(size=(N_ITEMS, IMAGE_DIM)))
    config = FusionConfig(rank=8, image_rank=8, epochs=6, batch_size=16, lr=1e-2)

    # A tune set that rewards bundle partners: training helps, and the chosen epoch is the best one.
    helped = train_fusion(
        text, image, bundles(), config, seed=0, metadata=METADATA, tune_score=lambda f: partner_cosine(f.fuse(text))
    )
    # A tune set that rewards what the frozen vectors already do: no epoch beats the untrained fusion.
    never = train_fusion(
        text,
        image,
        bundles(),
        config,
        seed=0,
        metadata=METADATA,
        tune_score=lambda f: -abs(partner_cosine(f.fuse(text)) - partner_cosine(text)),
    )

    assert len(helped.tune_scores) == config.epochs + 1
    assert helped.chosen_epoch == int(np.argmax(helped.tune_scores)) > 0
    assert partner_cosine(helped.fusion.fuse(text)) == pytest.approx(max(helped.tune_scores), abs=1e-6)
    assert never.chosen_epoch == 0
    np.testing.assert_allclose(never.fusion.fuse(text, image), text, atol=1e-6)
