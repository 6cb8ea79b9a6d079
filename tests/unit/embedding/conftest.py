"""Encoders shared by the embedding tests: loading one costs seconds, so each is loaded once.

The real encoders come from the service's own wiring (:func:`load_encoders`) on the CPU, with the
model cache that ``make models`` prepares (``BUNDLEWISE_MODEL_CACHE``). Tests that need
multilingual-e5-small or Whisper-base skip, saying so, when that cache has not been prepared;
tests that speak skip, saying so, without Debian's ``espeak-ng``. The vector-cache tests use the real
Redis (:mod:`redis_namespaces`) and skip, saying so, when it is not reachable.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import torch

from services.embedding.audio_encoder import WhisperBase
from services.embedding.device import DevicePlacement
from services.embedding.image_encoder import EfficientNetLiteImageEncoder
from services.embedding.model_cache import E5_NAME, WHISPER_NAME, e5_dir, is_prepared, whisper_dir
from services.embedding.settings import EmbeddingSettings, ModelCacheSettings
from services.embedding.text_encoder import (
    E5TextEncoder,
    MiniLMTextEncoder,
    TextEncoder,
    tiny_random_bert_encoder,
)
from services.embedding.vector_cache import RedisVectorCache
from services.embedding.wiring import LoadedEncoders, load_encoders
from shared.settings import load_settings
from tests.unit.embedding.redis_namespaces import CACHE_TTL_S, REDIS_URL, throwaway_namespace

CPU_FLOAT32 = DevicePlacement(torch.device("cpu"), torch.float32)


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """The model cache the service would read (``BUNDLEWISE_MODEL_CACHE`` or its default)."""
    return load_settings(ModelCacheSettings).model_cache


@pytest.fixture(scope="session")
def e5_prepared(model_cache: Path) -> Path:
    """The converted multilingual-e5-small folder; skips the test when it has not been prepared."""
    directory = e5_dir(model_cache)
    if not is_prepared(directory):
        pytest.skip(f"{E5_NAME} is not prepared in {model_cache}: run `make models` first")
    return directory


@pytest.fixture(scope="session")
def loaded(model_cache: Path) -> LoadedEncoders:
    """Every real encoder, loaded and warmed up once by the service's wiring, on the CPU in float32."""
    settings = EmbeddingSettings(
        embedding_device="cpu", model_cache=model_cache, embedding_int8=False, embedding_max_tokens=128
    )
    return load_encoders(settings)


def _text_encoder(loaded: LoadedEncoders, name: str) -> TextEncoder:
    return next(encoder for encoder in loaded.texts if encoder.name == name)


@pytest.fixture(scope="session")
def minilm(loaded: LoadedEncoders) -> MiniLMTextEncoder:
    """The real all-MiniLM-L6-v2 from the installed package, on the CPU, 128 word pieces."""
    encoder = _text_encoder(loaded, "all-MiniLM-L6-v2")
    assert isinstance(encoder, MiniLMTextEncoder)
    return encoder


@pytest.fixture(scope="session")
def e5(loaded: LoadedEncoders, e5_prepared: Path) -> E5TextEncoder:
    """The real multilingual-e5-small from the model cache, on the CPU in float32, 128 word pieces."""
    encoder = _text_encoder(loaded, E5_NAME)
    assert isinstance(encoder, E5TextEncoder)
    return encoder


@pytest.fixture(scope="session")
def efficientnet(loaded: LoadedEncoders) -> EfficientNetLiteImageEncoder:
    """The real ImageNet EfficientNet-Lite0 from the installed package, on the CPU."""
    [encoder] = loaded.images
    assert isinstance(encoder, EfficientNetLiteImageEncoder)
    return encoder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-random-bert")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir: Path) -> MiniLMTextEncoder:
    """A random 2-layer BERT through the real loading code: fast, meaningless vectors."""
    return tiny_random_bert_encoder(tiny_model_dir, seed=0)


@pytest.fixture(scope="session")
def whisper(loaded: LoadedEncoders, model_cache: Path) -> WhisperBase:
    """The real Whisper-base (CTranslate2, int8 on the CPU) from the model cache."""
    if loaded.whisper is None or not is_prepared(whisper_dir(model_cache)):
        pytest.skip(f"{WHISPER_NAME} is not prepared in {model_cache}: run `make models` first")
    return loaded.whisper


@pytest.fixture(scope="session")
def espeak_ng() -> str:
    """The ``espeak-ng`` program; skips the test when the Debian package is not installed."""
    program = shutil.which("espeak-ng")
    if program is None:
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng): speech cannot be synthesised")
    return program


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    """A client of the real Redis; skips the test when it is not reachable."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} is not reachable ({exc}); start it with `make up`")
    yield client
    client.close()


@pytest.fixture
def namespace(redis_client: redis.Redis) -> Iterator[str]:
    """A Redis namespace of this test's own, emptied afterwards."""
    with throwaway_namespace(redis_client) as name:
        yield name


@pytest.fixture
def cache(namespace: str) -> Iterator[RedisVectorCache]:
    """The vector cache on the real Redis, in this test's namespace, entries living ``CACHE_TTL_S``."""
    opened = RedisVectorCache.from_url(REDIS_URL, namespace, CACHE_TTL_S)
    yield opened
    opened.close()
