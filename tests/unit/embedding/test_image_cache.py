"""Image vectors in the vector cache: keyed by the SHA-256 of the image's bytes, on the real Redis.

The encoder is the real EfficientNet-Lite0, wrapped to record every image that reaches a forward
pass; the cache is the real Redis (``BUNDLEWISE_REDIS_URL``), each test in a namespace of its own.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt
import pytest
import redis
import torch
from bundlewise.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from PIL import Image
from prometheus_client import REGISTRY

from services.embedding.batcher import ImageBatcher
from services.embedding.embedder import IMAGE_KEY_ROLE, ImageEmbedder
from services.embedding.image_encoder import EfficientNetLiteImageEncoder, ImageEncoder
from services.embedding.image_input import ImageLimits, decode_image
from services.embedding.settings import EmbeddingSettings
from services.embedding.vector_cache import KEY_LAYOUT, RedisVectorCache, content_key
from services.embedding.wiring import LoadedEncoders, start_service
from shared.errors import InvalidArgument
from tests.unit.embedding.redis_namespaces import CACHE_TTL_S, REDIS_URL, throwaway_namespace

WAIT_S = 30.0
LIMITS = ImageLimits(max_bytes=200_000, max_pixels=4_000_000)
NOT_AN_IMAGE = "is not a decodable image (accepted: JPEG, PNG, WEBP, GIF, BMP)"


class CountingImageEncoder:
    """Wraps an image encoder and records every preprocessed image it is asked to encode."""

    def __init__(self, inner: ImageEncoder, version: str | None = None) -> None:
        self.inner = inner
        self.encoded: list[torch.Tensor] = []
        self.name, self.dim, self.license, self.device = inner.name, inner.dim, inner.license, inner.device
        self.version = version or inner.version

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.inner.preprocess(image)

    def encode(self, pixels: Sequence[torch.Tensor]) -> npt.NDArray[np.float32]:
        self.encoded.extend(pixels)
        return self.inner.encode(pixels)

    def saw(self, images: Sequence[bytes]) -> bool:
        """Whether exactly ``images``, in this order, went through forward passes so far."""
        expected = [self.inner.preprocess(decode_image(data, LIMITS, "image")) for data in images]
        return len(expected) == len(self.encoded) and all(
            torch.equal(seen, wanted) for seen, wanted in zip(self.encoded, expected, strict=True)
        )


def png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 200), color).save(out, format="PNG")
    return out.getvalue()


RED, GREEN, BLUE, YELLOW = png((220, 30, 30)), png((30, 200, 60)), png((30, 90, 200)), png((230, 210, 40))


def metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(f"bundlewise_embedding_{name}", labels) or 0.0


def image_counts() -> tuple[float, float, float]:
    """Image cache hits, image cache misses, images encoded: the process's counters now."""
    return (
        metric("cache_lookups_total", {"modality": "image", "result": "hit"}),
        metric("cache_lookups_total", {"modality": "image", "result": "miss"}),
        metric("encoded_total", {"modality": "image"}),
    )


def counts_since(before: tuple[float, float, float]) -> tuple[float, ...]:
    return tuple(now - then for now, then in zip(image_counts(), before, strict=True))


@pytest.fixture
def counting(efficientnet: EfficientNetLiteImageEncoder) -> CountingImageEncoder:
    return CountingImageEncoder(efficientnet)


def embedder_over(encoder: CountingImageEncoder, cache: RedisVectorCache | None) -> tuple[ImageEmbedder, ImageBatcher]:
    batcher = ImageBatcher(encoder, max_batch=16, max_wait_s=0.0, max_queue=64)
    return ImageEmbedder(batcher, cache, LIMITS), batcher


def alone(encoder: EfficientNetLiteImageEncoder, data: bytes) -> npt.NDArray[np.float32]:
    """The vector of one image encoded on its own, without the cache."""
    vectors = encoder.encode([encoder.preprocess(decode_image(data, LIMITS, "image"))])
    row: npt.NDArray[np.float32] = vectors[0]
    return row


def test_an_image_is_cached_under_the_model_version_and_the_sha256_of_its_bytes(
    counting: CountingImageEncoder, cache: RedisVectorCache, redis_client: redis.Redis, namespace: str
) -> None:
    embedder, batcher = embedder_over(counting, cache)

    [vector] = embedder.embed([RED], WAIT_S)
    batcher.close()

    key = content_key(counting.version, IMAGE_KEY_ROLE, hashlib.sha256(RED).hexdigest())
    stored = redis_client.get(f"{namespace}:embedding:{KEY_LAYOUT}:{key}")
    assert isinstance(stored, bytes)
    np.testing.assert_array_equal(np.frombuffer(stored, dtype="<f4"), vector)
    assert 0 < redis_client.ttl(f"{namespace}:embedding:{KEY_LAYOUT}:{key}") <= CACHE_TTL_S


def test_a_second_call_with_the_same_bytes_is_answered_from_the_cache_without_a_forward_pass(
    counting: CountingImageEncoder, cache: RedisVectorCache
) -> None:
    embedder, batcher = embedder_over(counting, cache)
    before = image_counts()

    first = embedder.embed([RED], WAIT_S)
    second = embedder.embed([RED], WAIT_S)
    batcher.close()

    assert counting.saw([RED])
    np.testing.assert_array_equal(second, first)
    assert counts_since(before) == (1, 1, 1)


def test_cached_and_new_images_come_back_in_input_order_each_with_its_own_vector(
    counting: CountingImageEncoder, cache: RedisVectorCache, efficientnet: EfficientNetLiteImageEncoder
) -> None:
    embedder, batcher = embedder_over(counting, cache)
    first = embedder.embed([RED, BLUE], WAIT_S)

    second = embedder.embed([GREEN, BLUE, RED, YELLOW], WAIT_S)
    batcher.close()

    assert counting.saw([RED, BLUE, GREEN, YELLOW])
    np.testing.assert_array_equal(second[1], first[1])
    np.testing.assert_array_equal(second[2], first[0])
    for row, data in enumerate([GREEN, BLUE, RED, YELLOW]):
        np.testing.assert_allclose(second[row], alone(efficientnet, data), atol=1e-4)


def test_an_image_repeated_within_one_call_is_decoded_and_encoded_once(
    counting: CountingImageEncoder, cache: RedisVectorCache
) -> None:
    embedder, batcher = embedder_over(counting, cache)

    vectors = embedder.embed([GREEN, YELLOW, GREEN], WAIT_S)
    batcher.close()

    assert counting.saw([GREEN, YELLOW])
    np.testing.assert_array_equal(vectors[2], vectors[0])


def test_another_model_version_does_not_read_this_versions_vectors(
    efficientnet: EfficientNetLiteImageEncoder, cache: RedisVectorCache
) -> None:
    current = CountingImageEncoder(efficientnet)
    retrained = CountingImageEncoder(efficientnet, version=efficientnet.version + "-retrained")
    embedder, batcher = embedder_over(current, cache)
    retrained_embedder, retrained_batcher = embedder_over(retrained, cache)

    embedder.embed([RED], WAIT_S)
    retrained_embedder.embed([RED], WAIT_S)
    embedder.embed([RED], WAIT_S)
    batcher.close()
    retrained_batcher.close()

    assert current.saw([RED])
    assert retrained.saw([RED])


@pytest.mark.parametrize(
    ("bad", "details"),
    [
        (b"not an image", f"images[1] {NOT_AN_IMAGE}"),
        (b"", "images[1] is empty"),
        (b"\xff" * 200_001, "images[1] has 200001 bytes; the limit is 200000"),
    ],
    ids=["undecodable", "empty", "too-many-bytes"],
)
def test_an_invalid_image_among_cached_ones_is_refused_naming_its_index(
    counting: CountingImageEncoder, cache: RedisVectorCache, bad: bytes, details: str
) -> None:
    embedder, batcher = embedder_over(counting, cache)
    embedder.embed([RED, BLUE], WAIT_S)

    with pytest.raises(InvalidArgument) as refused:
        embedder.embed([RED, bad, BLUE], WAIT_S)
    batcher.close()

    assert str(refused.value) == details
    assert counting.saw([RED, BLUE])


def test_the_lowest_invalid_index_among_the_uncached_images_is_refused(
    counting: CountingImageEncoder, cache: RedisVectorCache
) -> None:
    embedder, batcher = embedder_over(counting, cache)

    with pytest.raises(InvalidArgument) as refused:
        embedder.embed([RED, b"GIF89a broken", GREEN, b"%PDF-1.7"], WAIT_S)
    batcher.close()

    assert str(refused.value) == f"images[1] {NOT_AN_IMAGE}"
    assert counting.encoded == []


def test_an_unreachable_cache_costs_the_cache_not_the_call(
    counting: CountingImageEncoder, efficientnet: EfficientNetLiteImageEncoder
) -> None:
    unreachable = RedisVectorCache.from_url("redis://127.0.0.1:1/0", "test_emb_down", CACHE_TTL_S, timeout_s=0.2)
    embedder, batcher = embedder_over(counting, unreachable)
    errors_before = [metric("cache_errors_total", {"operation": op}) for op in ("read", "write")]

    vectors = embedder.embed([RED, BLUE], WAIT_S)
    batcher.close()
    unreachable.close()

    assert counting.saw([RED, BLUE])
    np.testing.assert_allclose(vectors, [alone(efficientnet, RED), alone(efficientnet, BLUE)], atol=1e-4)
    errors_after = [metric("cache_errors_total", {"operation": op}) for op in ("read", "write")]
    assert [after - before for after, before in zip(errors_after, errors_before, strict=True)] == [1, 1]


def test_without_a_cache_every_image_is_decoded_and_encoded(counting: CountingImageEncoder) -> None:
    embedder, batcher = embedder_over(counting, None)
    before = image_counts()

    embedder.embed([RED], WAIT_S)
    embedder.embed([RED], WAIT_S)
    batcher.close()

    assert counting.saw([RED, RED])
    assert counts_since(before) == (0, 0, 2)


# Through a real server built by the real wiring, with the cache on.


@pytest.fixture(scope="module")
def server_namespace(redis_client: redis.Redis) -> Iterator[str]:
    with throwaway_namespace(redis_client) as name:
        yield name


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    (root / "red.png").write_bytes(RED)
    return root


@pytest.fixture(scope="module")
def served_encoder(loaded: LoadedEncoders) -> CountingImageEncoder:
    [efficientnet] = loaded.images
    return CountingImageEncoder(efficientnet)


@pytest.fixture(scope="module")
def stub(
    loaded: LoadedEncoders, served_encoder: CountingImageEncoder, server_namespace: str, image_root: Path
) -> Iterator[embedding_pb2_grpc.EmbeddingStub]:
    settings = EmbeddingSettings(
        grpc_port=0,
        metrics_port=0,
        embedding_device="cpu",
        redis_url=REDIS_URL,
        namespace=server_namespace,
        embedding_image_root=image_root,
        embedding_max_image_bytes=LIMITS.max_bytes,
    )
    encoders = LoadedEncoders(loaded.placement, loaded.texts, [served_encoder], None)
    # Its own service name: test_servicer's server already registered the "embedding" gRPC metrics.
    server = start_service(settings, encoders, "embedding_image_cache_test", grace_s=1.0)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield embedding_pb2_grpc.EmbeddingStub(channel)
    server.stop()


def embed_images(stub: embedding_pb2_grpc.EmbeddingStub, images: list[embedding_pb2.ImageInput]) -> np.ndarray:
    response = stub.EmbedImages(embedding_pb2.EmbedImagesRequest(images=images), timeout=WAIT_S)
    return np.array([vector.values for vector in response.vectors], dtype=np.float32)


def test_embed_images_answers_the_same_bytes_again_from_the_cache_whether_sent_or_read_from_a_path(
    stub: embedding_pb2_grpc.EmbeddingStub, served_encoder: CountingImageEncoder
) -> None:
    first = embed_images(stub, [embedding_pb2.ImageInput(data=RED)])
    served_encoder.encoded.clear()
    before = image_counts()

    again = embed_images(stub, [embedding_pb2.ImageInput(path="red.png"), embedding_pb2.ImageInput(data=RED)])

    assert served_encoder.encoded == []
    np.testing.assert_array_equal(again, np.concatenate([first, first]))
    assert counts_since(before) == (2, 0, 0)


def test_embed_images_refuses_an_invalid_image_among_cached_ones_naming_its_index(
    stub: embedding_pb2_grpc.EmbeddingStub,
) -> None:
    embed_images(stub, [embedding_pb2.ImageInput(data=BLUE)])
    request = embedding_pb2.EmbedImagesRequest(
        images=[embedding_pb2.ImageInput(data=BLUE), embedding_pb2.ImageInput(data=b"not an image")]
    )

    with pytest.raises(grpc.RpcError) as failed:
        stub.EmbedImages(request, timeout=WAIT_S)

    assert isinstance(failed.value, grpc.Call)
    assert (failed.value.code(), failed.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"images[1] {NOT_AN_IMAGE}",
    )
