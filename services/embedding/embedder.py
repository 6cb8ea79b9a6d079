"""The core of the service: cached vectors first, the rest through the batcher, within a deadline."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future

import numpy as np
import torch

from services.embedding import metrics
from services.embedding.audio_encoder import AudioEncoder, AudioFeatures
from services.embedding.batcher import AudioBatcher, ImageBatcher, TextBatcher, Vectors
from services.embedding.image_encoder import ImageEncoder
from services.embedding.image_input import ImageLimits, check_image_bytes, decode_image
from services.embedding.text_encoder import BatchableTextEncoder, TextRole
from services.embedding.vector_cache import CacheUnavailable, VectorCache, content_key
from shared.errors import Unavailable

log = logging.getLogger(__name__)

_VALUE_DTYPE = np.dtype("<f4")
# The "role" of an image in its content key: the hash of the encoded bytes stands in for the text.
IMAGE_KEY_ROLE = "image"


def wait_for_vectors(future: Future[Vectors], timeout_s: float | None) -> Vectors:
    """The future's vectors, or Unavailable once ``timeout_s`` has passed (None: no limit).

    gRPC does not stop a handler whose deadline passed: this gives up then, and cancelling the
    future frees its place in the queue if no forward pass has started on it.
    """
    try:
        vectors: Vectors = future.result(timeout=timeout_s)
    except TimeoutError:
        future.cancel()
        raise Unavailable("embedding did not finish before the call's deadline") from None
    return vectors


class TextEmbedder:
    """Embeds texts with one encoder, reading and filling an optional vector cache.

    Cache keys are the encoder's version and the SHA-256 of (role, text), so a new model version
    never reads an old version's vectors. Repeated texts within one call are encoded once.
    """

    def __init__(self, batcher: TextBatcher, cache: VectorCache | None) -> None:
        """``cache`` None: every text is encoded."""
        self._batcher = batcher
        self._cache = cache

    @property
    def encoder(self) -> BatchableTextEncoder:
        """The encoder behind the batcher."""
        return self._batcher.encoder

    def embed(self, texts: list[str], role: TextRole, timeout_s: float | None) -> Vectors:
        """float32 ``(len(texts), dim)`` unit vectors in the order of ``texts``.

        Texts not in the cache are tokenised on this thread (see :meth:`TextBatcher.submit`), then
        batched with other calls' texts.

        Raises:
            Unavailable: not done within ``timeout_s`` seconds (tokenising included), or the batcher
                is closing.
            ResourceExhausted: the batcher's queue is full.
            InvalidArgument: more texts than the batcher's queue holds.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if self._cache is None:
            return wait_for_vectors(self._batcher.submit(texts, role), _seconds_left(deadline))
        encoder = self._batcher.encoder
        keys = [content_key(encoder.version, role.value, text) for text in texts]
        vectors, missing = _read_cached(self._cache, keys, encoder.dim, "text")
        if not missing:
            return vectors
        encoded = wait_for_vectors(
            self._batcher.submit([texts[indices[0]] for indices in missing.values()], role), _seconds_left(deadline)
        )
        for row, indices in zip(encoded, missing.values(), strict=True):
            vectors[indices] = row
        _write_back(self._cache, missing, encoded)
        return vectors


class ImageEmbedder:
    """Embeds encoded images (JPEG, PNG, ...) with one image encoder, reading and filling an optional vector cache.

    Cache keys are the encoder's version and the SHA-256 of the image's encoded bytes, so a cached
    image is answered without being decoded at all; only the others are decoded, checked and
    preprocessed, on the calling thread, and then batched with other calls' images. Only images
    that were encoded are written, so an invalid image is never cached. Byte-identical images
    within one call are decoded and encoded once; the same picture in another encoding (another
    JPEG quality, PNG instead of JPEG) is another key.
    """

    def __init__(self, batcher: ImageBatcher, cache: VectorCache | None, limits: ImageLimits) -> None:
        """``cache`` None: every image is decoded and encoded. ``limits`` apply to every image, cached or not."""
        self._batcher = batcher
        self._cache = cache
        self._limits = limits

    @property
    def encoder(self) -> ImageEncoder:
        """The encoder behind the batcher."""
        return self._batcher.encoder

    @property
    def limits(self) -> ImageLimits:
        """What one image may be (encoded bytes, pixels)."""
        return self._limits

    def embed(self, images: Sequence[bytes], timeout_s: float | None, labels: Sequence[str] | None = None) -> Vectors:
        """float32 ``(len(images), dim)`` unit vectors in the order of ``images``.

        Every image's byte count is checked first; decoding (and so the format and pixel checks)
        happens only for images not in the cache. Error messages name the image ``labels[index]``
        (None: ``images[<index>]``).

        Raises:
            InvalidArgument: an image is empty or has more bytes than the limit; an image not in
                the cache is not decodable, has more pixels than the limit or is corrupt (see
                :func:`decode_image`); or more images than the batcher's queue holds.
            Unavailable: not done within ``timeout_s`` seconds (decoding included), or the batcher is closing.
            ResourceExhausted: the batcher's queue is full.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        names = list(labels) if labels is not None else [_image_label(index) for index in range(len(images))]
        for data, name in zip(images, names, strict=True):
            check_image_bytes(data, self._limits, name)
        if self._cache is None:
            pixels = [self._preprocess(data, name) for data, name in zip(images, names, strict=True)]
            return wait_for_vectors(self._batcher.submit(pixels, None), _seconds_left(deadline))
        encoder = self._batcher.encoder
        keys = [content_key(encoder.version, IMAGE_KEY_ROLE, hashlib.sha256(data).hexdigest()) for data in images]
        vectors, missing = _read_cached(self._cache, keys, encoder.dim, "image")
        if not missing:
            return vectors
        # In order of first appearance, so the lowest invalid index among the misses is the one refused.
        pixels = [self._preprocess(images[indices[0]], names[indices[0]]) for indices in missing.values()]
        encoded = wait_for_vectors(self._batcher.submit(pixels, None), _seconds_left(deadline))
        for row, indices in zip(encoded, missing.values(), strict=True):
            vectors[indices] = row
        _write_back(self._cache, missing, encoded)
        return vectors

    def _preprocess(self, data: bytes, label: str) -> torch.Tensor:
        return self._batcher.encoder.preprocess(decode_image(data, self._limits, label))


class AudioEmbedder:
    """Embeds clips with one audio encoder: each padded length is its own batcher group.

    Audio vectors are not cached: equal clips (byte for byte) are rare, unlike repeated titles.
    """

    def __init__(self, batcher: AudioBatcher) -> None:
        """Uses ``batcher`` for every forward pass."""
        self._batcher = batcher

    @property
    def encoder(self) -> AudioEncoder:
        """The encoder behind the batcher."""
        return self._batcher.encoder

    def embed(self, clips: list[AudioFeatures], timeout_s: float | None) -> Vectors:
        """float32 ``(len(clips), dim)`` unit vectors in the order of ``clips``.

        Raises:
            Unavailable: not done within ``timeout_s`` seconds, or the batcher is closing.
            ResourceExhausted: the batcher's queue is full (nothing of this call stays queued).
            InvalidArgument: more clips than the batcher's queue holds.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        by_length: dict[int, list[int]] = {}
        for index, clip in enumerate(clips):
            by_length.setdefault(clip.padded_frames, []).append(index)
        futures: list[tuple[list[int], Future[Vectors]]] = []
        try:
            for length, indices in by_length.items():
                futures.append((indices, self._batcher.submit([clips[index] for index in indices], length)))
        except Exception:
            for _, future in futures:
                future.cancel()
            raise
        vectors = np.empty((len(clips), self._batcher.encoder.dim), dtype=np.float32)
        for position, (indices, future) in enumerate(futures):
            try:
                vectors[indices] = wait_for_vectors(future, _seconds_left(deadline))
            except Exception:
                for _, later in futures[position + 1 :]:
                    later.cancel()
                raise
        return vectors


def _seconds_left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _image_label(index: int) -> str:
    return f"images[{index}]"


def _read_cached(cache: VectorCache, keys: list[str], dim: int, modality: str) -> tuple[Vectors, dict[str, list[int]]]:
    """float32 ``(len(keys), dim)`` with every cached row filled in, and the rows of each key not
    found (keys in order of first appearance); counts the hits and misses under ``modality``."""
    vectors = np.empty((len(keys), dim), dtype=np.float32)
    missing: dict[str, list[int]] = {}
    value_bytes = dim * _VALUE_DTYPE.itemsize
    for index, (key, value) in enumerate(zip(keys, _get_many(cache, keys), strict=True)):
        if value is not None and len(value) == value_bytes:
            vectors[index] = np.frombuffer(value, dtype=_VALUE_DTYPE)
        else:
            missing.setdefault(key, []).append(index)
    misses = sum(len(indices) for indices in missing.values())
    metrics.CACHE_LOOKUPS.labels(modality, "hit").inc(len(keys) - misses)
    metrics.CACHE_LOOKUPS.labels(modality, "miss").inc(misses)
    return vectors, missing


def _get_many(cache: VectorCache, keys: list[str]) -> list[bytes | None]:
    try:
        return cache.get_many(keys)
    except CacheUnavailable as exc:
        metrics.CACHE_ERRORS.labels("read").inc()
        log.warning("%s; encoding without the cache", exc)
        return [None] * len(keys)


def _write_back(cache: VectorCache, keys: Iterable[str], rows: Vectors) -> None:
    """Stores row ``i`` of ``rows`` under the ``i``-th key; a failure is logged and counted, never raised."""
    try:
        cache.put_many({key: row.astype(_VALUE_DTYPE).tobytes() for key, row in zip(keys, rows, strict=True)})
    except CacheUnavailable as exc:
        metrics.CACHE_ERRORS.labels("write").inc()
        log.warning("%s; the vectors were returned uncached", exc)
