"""The vector cache on the real Redis (``BUNDLEWISE_REDIS_URL``, default 127.0.0.1:6379), in a namespace of its own.

Texts here; images in ``test_image_cache``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import redis
from prometheus_client import REGISTRY

from services.embedding.batcher import TextBatcher
from services.embedding.embedder import TextEmbedder
from services.embedding.text_encoder import BatchableTextEncoder, MiniLMTextEncoder, TextRole, TokenizedText
from services.embedding.vector_cache import KEY_LAYOUT, RedisVectorCache, content_key
from tests.unit.embedding.redis_namespaces import CACHE_TTL_S

WAIT_S = 10.0


class CountingEncoder:
    """Wraps an encoder and records every text it is asked to encode (tokenised on the way to the batcher)."""

    def __init__(self, inner: BatchableTextEncoder, version: str | None = None) -> None:
        self.inner = inner
        self.encoded: list[str] = []
        self.name, self.dim, self.license, self.device = inner.name, inner.dim, inner.license, inner.device
        self.version = version or inner.version

    def tokenize(self, texts: Sequence[str], role: TextRole) -> list[TokenizedText]:
        self.encoded.extend(texts)
        return self.inner.tokenize(texts, role)

    def encode_tokenized(self, tokens: Sequence[TokenizedText]) -> npt.NDArray[np.float32]:
        return self.inner.encode_tokenized(tokens)

    def encode(self, texts: Sequence[str], role: TextRole) -> npt.NDArray[np.float32]:
        return self.encode_tokenized(self.tokenize(texts, role))


def cache_lookups(result: str) -> float:
    return (
        REGISTRY.get_sample_value("bundlewise_embedding_cache_lookups_total", {"modality": "text", "result": result})
        or 0.0
    )


def embedder_over(encoder: CountingEncoder, cache: RedisVectorCache | None) -> tuple[TextEmbedder, TextBatcher]:
    batcher = TextBatcher(encoder, max_batch=32, max_wait_s=0.0, max_queue=1024)
    return TextEmbedder(batcher, cache), batcher


def test_content_keys_separate_model_versions_roles_and_texts() -> None:
    key = content_key("m@1", "passage", "usb cable")

    assert key.startswith("m@1:")
    assert len(key) == len("m@1:") + 64
    assert key == content_key("m@1", "passage", "usb cable")
    assert len({key, content_key("m@2", "passage", "usb cable"), content_key("m@1", "query", "usb cable")}) == 3
    assert content_key("m@1", "query", "x") != content_key("m@1", "quer", "yx")


def test_redis_round_trip_under_the_namespace_with_a_ttl(
    cache: RedisVectorCache, redis_client: redis.Redis, namespace: str
) -> None:
    cache.put_many({"m@1:aa": b"\x01\x02", "m@1:bb": b"\x03"})

    assert cache.get_many(["m@1:aa", "m@1:missing", "m@1:bb"]) == [b"\x01\x02", None, b"\x03"]
    assert cache.key_prefix == f"{namespace}:embedding:{KEY_LAYOUT}:"
    assert 0 < redis_client.ttl(f"{namespace}:embedding:{KEY_LAYOUT}:m@1:aa") <= CACHE_TTL_S


def test_a_cached_text_is_not_encoded_again_and_gives_the_same_vector(
    tiny_encoder: MiniLMTextEncoder, cache: RedisVectorCache
) -> None:
    encoder = CountingEncoder(tiny_encoder)
    embedder, batcher = embedder_over(encoder, cache)
    hits_before, misses_before = cache_lookups("hit"), cache_lookups("miss")

    first = embedder.embed(["usb-c cable", "hdmi cable"], TextRole.PASSAGE, WAIT_S)
    second = embedder.embed(["hdmi cable", "usb-c cable", "aa batteries"], TextRole.PASSAGE, WAIT_S)
    batcher.close()

    assert encoder.encoded == ["usb-c cable", "hdmi cable", "aa batteries"]
    np.testing.assert_array_equal(second[:2], first[::-1])
    np.testing.assert_allclose(second[2], tiny_encoder.encode(["aa batteries"], TextRole.PASSAGE)[0], atol=1e-6)
    assert (cache_lookups("hit") - hits_before, cache_lookups("miss") - misses_before) == (2, 3)


def test_the_role_and_the_model_version_are_part_of_the_key(
    tiny_encoder: MiniLMTextEncoder, cache: RedisVectorCache
) -> None:
    encoder = CountingEncoder(tiny_encoder)
    embedder, batcher = embedder_over(encoder, cache)
    newer = CountingEncoder(tiny_encoder, version=tiny_encoder.version + "-retrained")
    newer_embedder, newer_batcher = embedder_over(newer, cache)

    embedder.embed(["usb-c cable"], TextRole.PASSAGE, WAIT_S)
    embedder.embed(["usb-c cable"], TextRole.QUERY, WAIT_S)
    newer_embedder.embed(["usb-c cable"], TextRole.PASSAGE, WAIT_S)
    batcher.close()
    newer_batcher.close()

    assert encoder.encoded == ["usb-c cable", "usb-c cable"]
    assert newer.encoded == ["usb-c cable"]


def test_a_text_repeated_within_one_call_is_encoded_once(
    tiny_encoder: MiniLMTextEncoder, cache: RedisVectorCache
) -> None:
    encoder = CountingEncoder(tiny_encoder)
    embedder, batcher = embedder_over(encoder, cache)

    vectors = embedder.embed(["mouse", "mouse", "pad", "mouse"], TextRole.PASSAGE, WAIT_S)
    batcher.close()

    assert encoder.encoded == ["mouse", "pad"]
    np.testing.assert_array_equal(vectors[0], vectors[1])
    np.testing.assert_array_equal(vectors[0], vectors[3])


def test_an_unreachable_redis_costs_the_cache_not_the_call(tiny_encoder: MiniLMTextEncoder) -> None:
    unreachable = RedisVectorCache.from_url("redis://127.0.0.1:1/0", "test_emb_down", CACHE_TTL_S, timeout_s=0.2)
    encoder = CountingEncoder(tiny_encoder)
    embedder, batcher = embedder_over(encoder, unreachable)
    errors = REGISTRY.get_sample_value("bundlewise_embedding_cache_errors_total", {"operation": "read"}) or 0.0

    vectors = embedder.embed(["usb-c cable"], TextRole.PASSAGE, WAIT_S)
    batcher.close()

    np.testing.assert_allclose(vectors, tiny_encoder.encode(["usb-c cable"], TextRole.PASSAGE), atol=1e-6)
    assert REGISTRY.get_sample_value("bundlewise_embedding_cache_errors_total", {"operation": "read"}) == errors + 1


def test_without_a_cache_every_call_is_encoded(tiny_encoder: MiniLMTextEncoder) -> None:
    encoder = CountingEncoder(tiny_encoder)
    embedder, batcher = embedder_over(encoder, None)

    embedder.embed(["mouse"], TextRole.PASSAGE, WAIT_S)
    embedder.embed(["mouse"], TextRole.PASSAGE, WAIT_S)
    batcher.close()

    assert encoder.encoded == ["mouse", "mouse"]
