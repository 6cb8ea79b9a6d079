"""Settings of the embedding service, read once from ``BUNDLEWISE_*`` variables at start."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import ENV_PREFIX, BaseServiceSettings

MAX_TEXTS_PER_CALL = 1024
"""The API's hard limit on texts in one ``EmbedTexts`` call (larger calls are INVALID_ARGUMENT)."""

MAX_IMAGES_PER_CALL = 64
"""The API's hard limit on images in one ``EmbedImages`` call (larger calls are INVALID_ARGUMENT)."""

MAX_AUDIO_CLIPS_PER_CALL = 16
"""The API's hard limit on clips in one ``EmbedAudio`` call (larger calls are INVALID_ARGUMENT)."""

MAX_AUDIO_SECONDS = 30.0
"""Whisper's window: no clip may be longer, whatever the setting."""

MAX_ITEMS_PER_CALL = 256
"""The API's hard limit on items in one ``EmbedItems`` call (larger calls are INVALID_ARGUMENT)."""

CPU_IMAGE_BATCH = 4
"""Default images per forward pass on the CPU: on a few cores larger batches fall out of the cache."""

GPU_IMAGE_BATCH = 16
"""Default images per forward pass on CUDA."""

DEFAULT_MODEL_CACHE = Path("~/.cache/bundlewise/models")

DEFAULT_FUSION_PATH = Path(__file__).resolve().parent / "weights" / "item-fusion.npz"
"""The item fusion shipped with the code (``python -m services.ranker.offline.train_item_fusion`` writes it)."""


class ModelCacheSettings(BaseSettings):
    """Where ``make models`` writes converted checkpoints and the service reads them."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    model_cache: Path = Field(
        default=DEFAULT_MODEL_CACHE,
        description="Folder of converted model checkpoints (make models fills it); outside the repository.",
    )

    @field_validator("model_cache")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()


class EmbeddingSettings(BaseServiceSettings, ModelCacheSettings):
    """Ports, device, models, cache and input limits of the embedding service."""

    grpc_port: int = Field(default=50052, ge=0, le=65535, description="gRPC port; 0 picks a free port.")
    metrics_port: int = Field(default=9102, ge=0, le=65535, description="HTTP port of /metrics; 0 picks a free port.")
    embedding_device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: CUDA (float16) when torch sees a GPU, else CPU (float32)."
    )
    embedding_int8: bool = Field(
        default=False,
        description="On the CPU, run the text encoders' linear layers in int8 (dynamic quantisation); "
        "ignored on CUDA. Vectors get their own model version.",
    )
    embedding_max_batch: int = Field(default=64, ge=1, le=1024, description="Texts per forward pass.")
    embedding_max_image_batch: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Images per forward pass; unset: 4 on the CPU (on a few cores larger batches fall out of "
        "the cache: 40 images/s at 16 against 70 at 4 on 2 cores), 16 on CUDA.",
    )
    embedding_torch_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="CPU threads torch runs the encoders on (and so the image passes side by side); unset: "
        "torch's own count, the machine's cores. In a container with a CPU limit, set it to the limit: torch "
        "does not see the limit.",
    )
    embedding_image_workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Image forward passes run side by side, each on its share of the torch threads; unset: one "
        "per torch thread on the CPU (single-threaded passes waste no time at OpenMP barriers, and one decodes "
        "while another computes), 1 on CUDA.",
    )
    embedding_max_wait_ms: float = Field(
        default=5.0, ge=0.0, le=1000.0, description="How long the oldest waiting input may wait for others."
    )
    # Must hold at least one full call, or a maximal call could never be admitted.
    embedding_max_queue: int = Field(
        default=4096,
        ge=MAX_TEXTS_PER_CALL,
        description="Texts waiting to be encoded before new calls get RESOURCE_EXHAUSTED.",
    )
    embedding_max_image_queue: int = Field(
        default=256,
        ge=MAX_IMAGES_PER_CALL,
        description="Decoded images waiting to be encoded before new calls get RESOURCE_EXHAUSTED.",
    )
    embedding_interactive_max_inputs: int = Field(
        default=8,
        ge=0,
        le=MAX_TEXTS_PER_CALL,
        description="Calls of at most this many texts or images (a shopper's query, one product) are "
        "batched before bulk calls queued earlier; 0: strictly oldest first.",
    )
    embedding_max_text_chars: int = Field(
        default=2000, ge=1, description="Longer texts are rejected with INVALID_ARGUMENT."
    )
    # BERT's position table has 512 entries; all-MiniLM-L6-v2 was trained on 128 word pieces.
    embedding_max_tokens: int = Field(
        default=128, ge=8, le=512, description="Word pieces kept per text; longer texts are truncated."
    )
    embedding_max_image_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, le=60 * 1024 * 1024, description="Larger encoded images are rejected."
    )
    embedding_max_image_pixels: int = Field(
        default=40_000_000,
        ge=224 * 224,
        le=100_000_000,
        description="Images of more pixels (width x height, read from the header before decoding) are rejected.",
    )
    embedding_image_root: Path | None = Field(
        default=None,
        description="Images may be given by path only inside this folder; unset: paths are refused.",
    )
    redis_url: str | None = Field(
        default=None,
        pattern=r"^rediss?://",
        description="Redis of the vector cache (content hash + model version); unset: no cache.",
    )
    namespace: str = Field(default="live", pattern="^[a-z][a-z0-9_]{0,30}$", description="Redis key prefix.")
    embedding_cache_ttl_s: int = Field(
        default=30 * 24 * 3600, ge=60, description="How long a cached vector lives in Redis after it is written."
    )
    embedding_max_audio_batch: int = Field(default=16, ge=1, le=256, description="Audio clips per forward pass.")
    embedding_max_audio_queue: int = Field(
        default=128,
        ge=MAX_AUDIO_CLIPS_PER_CALL,
        description="Decoded clips waiting to be encoded before new calls get RESOURCE_EXHAUSTED.",
    )
    embedding_max_audio_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, le=60 * 1024 * 1024, description="Larger encoded clips are rejected."
    )
    embedding_max_audio_seconds: float = Field(
        default=MAX_AUDIO_SECONDS,
        gt=0.1,
        le=MAX_AUDIO_SECONDS,
        description="Longer clips are rejected (checked from the header before decoding); at most Whisper's 30 s.",
    )
    embedding_audio_threads: int = Field(
        default=0, ge=0, le=64, description="CTranslate2 threads per Whisper call; 0: its default (up to 4)."
    )
    embedding_spoken_languages: list[str] = Field(
        default=["en", "zh"],
        min_length=1,
        description='Languages a spoken query may be in (JSON list, e.g. ["en", "zh"]); detection chooses among them.',
    )
    embedding_spoken_query_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        le=120.0,
        description="Most a spoken query (transcription and query vector) may take, whatever the caller's deadline.",
    )
    embedding_max_spoken_batch: int = Field(
        default=8, ge=1, le=128, description="Spoken queries transcribed together in one encoder pass and decode."
    )
    embedding_fusion_path: Path = Field(
        default=DEFAULT_FUSION_PATH,
        description="The item fusion EmbedItems serves (.npz); the one shipped with the code by default.",
    )
    embedding_max_spoken_queue: int = Field(
        default=8, ge=1, le=1024, description="Spoken queries waiting or transcribing before RESOURCE_EXHAUSTED."
    )

    def image_batch_on(self, device_type: str) -> int:
        """Images per forward pass on a device of ``device_type`` (``cpu`` or ``cuda``, as
        ``torch.device.type`` names it): the setting, else its default there."""
        if self.embedding_max_image_batch is not None:
            return self.embedding_max_image_batch
        return CPU_IMAGE_BATCH if device_type == "cpu" else GPU_IMAGE_BATCH

    def image_workers_on(self, device_type: str, torch_threads: int) -> tuple[int, int]:
        """Image forward passes side by side on a device of ``device_type``, and the torch threads
        of each, out of ``torch_threads``: the setting, else one single-threaded pass per thread on
        the CPU and one pass on CUDA."""
        workers = self.embedding_image_workers or (torch_threads if device_type == "cpu" else 1)
        return workers, max(1, torch_threads // workers)
