"""Embedding settings: defaults, environment names, and refusal of unusable values."""

from __future__ import annotations

import pytest

from services.embedding.settings import EmbeddingSettings
from shared.settings import SettingsError, load_settings


def test_defaults_serve_on_50052_with_metrics_on_9102(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BUNDLEWISE_GRPC_PORT", "BUNDLEWISE_METRICS_PORT", "BUNDLEWISE_EMBEDDING_DEVICE"):
        monkeypatch.delenv(name, raising=False)

    settings = load_settings(EmbeddingSettings)

    assert (settings.grpc_port, settings.metrics_port, settings.embedding_device) == (50052, 9102, "auto")
    assert (settings.embedding_max_batch, settings.embedding_max_wait_ms) == (64, 5.0)
    assert (settings.embedding_max_queue, settings.embedding_max_text_chars) == (4096, 2000)
    assert settings.embedding_max_tokens == 128


def test_settings_come_from_bundlewise_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNDLEWISE_GRPC_PORT", "6000")
    monkeypatch.setenv("BUNDLEWISE_EMBEDDING_DEVICE", "cpu")
    monkeypatch.setenv("BUNDLEWISE_EMBEDDING_MAX_BATCH", "16")

    settings = load_settings(EmbeddingSettings)

    assert (settings.grpc_port, settings.embedding_device, settings.embedding_max_batch) == (6000, "cpu", 16)


def test_a_queue_smaller_than_one_full_call_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNDLEWISE_EMBEDDING_MAX_QUEUE", "1000")

    with pytest.raises(SettingsError, match="BUNDLEWISE_EMBEDDING_MAX_QUEUE is invalid"):
        load_settings(EmbeddingSettings)


def test_an_unknown_device_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNDLEWISE_EMBEDDING_DEVICE", "tpu")

    with pytest.raises(SettingsError, match="BUNDLEWISE_EMBEDDING_DEVICE is invalid"):
        load_settings(EmbeddingSettings)
