"""The one place where the embedding service's encoder, batcher and servicer are built."""

from __future__ import annotations

import logging
from typing import Protocol

from services.embedding.batcher import TextBatcher
from services.embedding.device import choose_device
from services.embedding.metrics import DEVICE_INFO
from services.embedding.servicer import EmbeddingServicer
from services.embedding.settings import EmbeddingSettings
from services.embedding.text_encoder import MiniLMTextEncoder, TextEncoder, TextRole

log = logging.getLogger(__name__)


class Closeable(Protocol):
    def close(self) -> None:
        """Releases what the object holds; called once the server has stopped taking calls."""
        ...


def build_service(settings: EmbeddingSettings) -> tuple[EmbeddingServicer, list[Closeable]]:
    """Loads the encoder onto the configured device, warms it up and wraps it for gRPC.

    Returns:
        The servicer, and what to close after the server stops (in that order).

    Raises:
        RuntimeError: CUDA was asked for and is not there.
        FileNotFoundError: the packaged weights are missing.
    """
    placement = choose_device(settings.embedding_device)
    encoder = MiniLMTextEncoder.from_package(placement, settings.embedding_max_tokens)
    _warm_up(encoder, settings.embedding_max_tokens)
    DEVICE_INFO.labels(placement.describe()).set(1)
    log.info(
        "loaded text encoder %s (dim %d) on %s in %s",
        encoder.version,
        encoder.dim,
        placement.describe(),
        placement.dtype,
    )
    batcher = TextBatcher(
        encoder,
        max_batch=settings.embedding_max_batch,
        max_wait_s=settings.embedding_max_wait_ms / 1000.0,
        max_queue=settings.embedding_max_queue,
    )
    return EmbeddingServicer([batcher], settings.embedding_max_text_chars), [batcher]


def _warm_up(encoder: TextEncoder, max_tokens: int) -> None:
    # The first forward passes pay for lazy initialisation (kernels, allocator pools); pay it here,
    # at the longest sequence too, rather than on the first caller's clock.
    encoder.encode(["usb-c charging cable", "wireless mouse"], TextRole.PASSAGE)
    encoder.encode(["word " * max_tokens] * 4, TextRole.QUERY)
