"""Embedding settings: defaults, environment names, and refusal of unusable values."""

from __future__ import annotations

from pathlib import Path

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


def test_the_vector_cache_is_off_unless_a_redis_url_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUNDLEWISE_REDIS_URL", raising=False)
    assert load_settings(EmbeddingSettings).redis_url is None

    monkeypatch.setenv("BUNDLEWISE_REDIS_URL", "redis://127.0.0.1:6379/0")
    assert load_settings(EmbeddingSettings).redis_url == "redis://127.0.0.1:6379/0"


def test_a_redis_url_of_another_scheme_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNDLEWISE_REDIS_URL", "http://127.0.0.1:6379")

    with pytest.raises(SettingsError, match="BUNDLEWISE_REDIS_URL is invalid"):
        load_settings(EmbeddingSettings)


def test_int8_image_limits_and_image_root_default_to_off_and_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "BUNDLEWISE_EMBEDDING_INT8",
        "BUNDLEWISE_EMBEDDING_IMAGE_ROOT",
        "BUNDLEWISE_EMBEDDING_MAX_IMAGE_BYTES",
    ):
        monkeypatch.delenv(name, raising=False)

    settings = load_settings(EmbeddingSettings)

    assert (settings.embedding_int8, settings.embedding_image_root) == (False, None)
    assert (settings.embedding_max_image_bytes, settings.embedding_max_image_pixels) == (10 * 1024 * 1024, 40_000_000)


def test_int8_and_the_image_root_come_from_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNDLEWISE_EMBEDDING_INT8", "1")
    monkeypatch.setenv("BUNDLEWISE_EMBEDDING_IMAGE_ROOT", "/srv/product-images")

    settings = load_settings(EmbeddingSettings)

    assert (settings.embedding_int8, settings.embedding_image_root) == (True, Path("/srv/product-images"))


def test_a_pixel_limit_past_pillows_own_refusal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNDLEWISE_EMBEDDING_MAX_IMAGE_PIXELS", "200000000")

    with pytest.raises(SettingsError, match="BUNDLEWISE_EMBEDDING_MAX_IMAGE_PIXELS is invalid"):
        load_settings(EmbeddingSettings)


def test_images_go_four_to_a_pass_on_the_cpu_and_sixteen_on_a_gpu_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUNDLEWISE_EMBEDDING_MAX_IMAGE_BATCH", raising=False)
    default = load_settings(EmbeddingSettings)
    monkeypatch.setenv("BUNDLEWISE_EMBEDDING_MAX_IMAGE_BATCH", "8")
    chosen = load_settings(EmbeddingSettings)

    assert (default.image_batch_on("cpu"), default.image_batch_on("cuda")) == (4, 16)
    assert (chosen.image_batch_on("cpu"), chosen.image_batch_on("cuda")) == (8, 8)


def test_the_cpu_runs_one_single_threaded_image_pass_per_thread_and_a_gpu_one_pass_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BUNDLEWISE_EMBEDDING_IMAGE_WORKERS", raising=False)
    default = load_settings(EmbeddingSettings)
    monkeypatch.setenv("BUNDLEWISE_EMBEDDING_IMAGE_WORKERS", "2")
    chosen = load_settings(EmbeddingSettings)

    assert default.image_workers_on("cpu", torch_threads=4) == (4, 1)
    assert default.image_workers_on("cuda", torch_threads=4) == (1, 4)
    assert chosen.image_workers_on("cpu", torch_threads=4) == (2, 2)
    assert chosen.image_workers_on("cpu", torch_threads=1) == (2, 1)
