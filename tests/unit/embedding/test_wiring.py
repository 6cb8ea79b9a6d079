"""The wiring's choice of encoders: multilingual-e5 is the default text model exactly when it is prepared."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.embedding.model_cache import E5_NAME
from services.embedding.settings import EmbeddingSettings
from services.embedding.wiring import LoadedEncoders, load_encoders


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
