"""The core of the service: cached vectors first, the rest through the batcher, within a deadline."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

import numpy as np

from services.embedding import metrics
from services.embedding.audio_encoder import AudioEncoder, AudioFeatures
from services.embedding.batcher import AudioBatcher, TextBatcher, Vectors
from services.embedding.text_encoder import TextEncoder, TextRole
from services.embedding.vector_cache import CacheUnavailable, VectorCache, content_key
from shared.errors import Unavailable

log = logging.getLogger(__name__)

_VALUE_DTYPE = np.dtype("<f4")


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
    def encoder(self) -> TextEncoder:
        """The encoder behind the batcher."""
        return self._batcher.encoder

    def embed(self, texts: list[str], role: TextRole, timeout_s: float | None) -> Vectors:
        """float32 ``(len(texts), dim)`` unit vectors in the order of ``texts``.

        Raises:
            Unavailable: not done within ``timeout_s`` seconds, or the batcher is closing.
            ResourceExhausted: the batcher's queue is full.
            InvalidArgument: more texts than the batcher's queue holds.
        """
        if self._cache is None:
            return wait_for_vectors(self._batcher.submit(texts, role), timeout_s)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        encoder = self._batcher.encoder
        keys = [content_key(encoder.version, role.value, text) for text in texts]
        vectors = np.empty((len(texts), encoder.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        value_bytes = encoder.dim * _VALUE_DTYPE.itemsize
        for index, (key, value) in enumerate(zip(keys, self._read(keys), strict=True)):
            if value is not None and len(value) == value_bytes:
                vectors[index] = np.frombuffer(value, dtype=_VALUE_DTYPE)
            else:
                missing.setdefault(key, []).append(index)
        misses = sum(len(indices) for indices in missing.values())
        metrics.CACHE_LOOKUPS.labels("hit").inc(len(texts) - misses)
        metrics.CACHE_LOOKUPS.labels("miss").inc(misses)
        if not missing:
            return vectors
        remaining_s = None if deadline is None else max(0.0, deadline - time.monotonic())
        encoded = wait_for_vectors(
            self._batcher.submit([texts[indices[0]] for indices in missing.values()], role), remaining_s
        )
        for row, indices in zip(encoded, missing.values(), strict=True):
            vectors[indices] = row
        self._write({key: row.astype(_VALUE_DTYPE).tobytes() for key, row in zip(missing, encoded, strict=True)})
        return vectors

    def _read(self, keys: list[str]) -> list[bytes | None]:
        assert self._cache is not None
        try:
            return self._cache.get_many(keys)
        except CacheUnavailable as exc:
            metrics.CACHE_ERRORS.labels("read").inc()
            log.warning("%s; encoding without the cache", exc)
            return [None] * len(keys)

    def _write(self, values: dict[str, bytes]) -> None:
        assert self._cache is not None
        try:
            self._cache.put_many(values)
        except CacheUnavailable as exc:
            metrics.CACHE_ERRORS.labels("write").inc()
            log.warning("%s; the vectors were returned uncached", exc)


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
            remaining_s = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                vectors[indices] = wait_for_vectors(future, remaining_s)
            except Exception:
                for _, later in futures[position + 1 :]:
                    later.cancel()
                raise
        return vectors
