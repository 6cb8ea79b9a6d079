"""Settings of the embedding service, read once from ``BUNDLEWISE_*`` variables at start."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.settings import BaseServiceSettings

MAX_TEXTS_PER_CALL = 1024
"""The API's hard limit on texts in one ``EmbedTexts`` call (larger calls are INVALID_ARGUMENT)."""


class EmbeddingSettings(BaseServiceSettings):
    """Ports, device and batching limits of the embedding service."""

    grpc_port: int = Field(default=50052, ge=0, le=65535, description="gRPC port; 0 picks a free port.")
    metrics_port: int = Field(default=9102, ge=0, le=65535, description="HTTP port of /metrics; 0 picks a free port.")
    embedding_device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: CUDA (float16) when torch sees a GPU, else CPU (float32)."
    )
    embedding_max_batch: int = Field(default=64, ge=1, le=1024, description="Texts per forward pass.")
    embedding_max_wait_ms: float = Field(
        default=5.0, ge=0.0, le=1000.0, description="How long the oldest waiting text may wait for others."
    )
    # Must hold at least one full call, or a maximal call could never be admitted.
    embedding_max_queue: int = Field(
        default=4096,
        ge=MAX_TEXTS_PER_CALL,
        description="Texts waiting to be encoded before new calls get RESOURCE_EXHAUSTED.",
    )
    embedding_max_text_chars: int = Field(
        default=2000, ge=1, description="Longer texts are rejected with INVALID_ARGUMENT."
    )
    # BERT's position table has 512 entries; all-MiniLM-L6-v2 was trained on 128 word pieces.
    embedding_max_tokens: int = Field(
        default=128, ge=8, le=512, description="Word pieces kept per text; longer texts are truncated."
    )
