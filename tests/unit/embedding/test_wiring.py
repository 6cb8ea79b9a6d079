"""The wiring's choice of encoders (multilingual-e5 is the default text model exactly when it is
prepared) and of the item fusion (only one trained on those encoders)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from services.embedding.fusion import FusionMetadata, ItemFusion
from services.embedding.model_cache import E5_NAME
from services.embedding.settings import DEFAULT_FUSION_PATH, EmbeddingSettings
from services.embedding.wiring import LoadedEncoders, load_encoders, load_item_fusion


def test_with_a_prepared_cache_e5_is_the_default_and_minilm_stays_available(
    loaded: LoadedEncoders, e5_prepared: Path
) -> None:
    assert [encoder.name for encoder in loaded.texts] == [E5_NAME, "all-MiniLM-L6-v2"]
    assert [encoder.name for encoder in loaded.images] == ["efficientnet-lite0"]


def test_without_a_prepared_cache_minilm_is_the_default_and_audio_is_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = EmbeddingSettings(embedding_device="cpu", model_cache=tmp_path, embedding_max_tokens=16)

    encoders = load_encoders(settings)

    assert [encoder.name for encoder in encoders.texts] == ["all-MiniLM-L6-v2"]
    assert f"no multilingual-e5-small in {tmp_path} (run `make models`)" in caplog.text
    assert encoders.whisper is None
    assert f"no whisper-base in {tmp_path} (run `make models`); audio and spoken queries are off" in caplog.text


def test_the_torch_threads_setting_sizes_torch_before_the_encoders_load(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    settings = EmbeddingSettings(
        embedding_device="cpu", model_cache=tmp_path, embedding_max_tokens=16, embedding_torch_threads=1
    )
    try:
        load_encoders(settings)

        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_shipped_item_fusion_was_trained_on_the_default_encoders_and_loads(
    loaded: LoadedEncoders, e5_prepared: Path
) -> None:
    fusion, reason = load_item_fusion(DEFAULT_FUSION_PATH, loaded.texts[0].version, loaded.images[0].version)

    assert fusion is not None, reason
    assert fusion.dim == loaded.texts[0].dim
    assert fusion.image_dim == loaded.images[0].dim
    assert fusion.metadata.training["split_seed"] == 0


def test_an_item_fusion_of_other_encoders_or_none_at_all_turns_embed_items_off_saying_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metadata = FusionMetadata(text_model_version="text@1", image_model_version="image@1")
    ItemFusion.untrained(8, 12, metadata, rank=2).save(tmp_path / "fusion.npz")

    fusion, reason = load_item_fusion(tmp_path / "fusion.npz", "all-MiniLM-L6-v2@abc", "image@1")
    assert fusion is None
    assert reason.startswith("EmbedItems is off: ")
    assert "trained on text vectors of text@1" in reason
    assert "retrain it" in reason
    assert reason in caplog.text

    fusion, reason = load_item_fusion(tmp_path / "missing.npz", "text@1", "image@1")
    assert fusion is None
    assert "python -m services.ranker.offline.train_item_fusion" in reason
