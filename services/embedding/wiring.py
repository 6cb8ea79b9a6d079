"""The one place where the embedding service's encoders, cache, batchers and servicer are built."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import torch
from bundlewise.embedding.v1 import embedding_pb2_grpc
from PIL import Image

from services.embedding.audio_encoder import WhisperBase
from services.embedding.audio_input import SAMPLE_RATE, AudioLimits
from services.embedding.batcher import AudioBatcher, ImageBatcher, TextBatcher
from services.embedding.device import DevicePlacement, choose_device, ctranslate2_placement
from services.embedding.embedder import AudioEmbedder, ImageEmbedder, TextEmbedder
from services.embedding.fusion import ItemFusion
from services.embedding.image_encoder import EfficientNetLiteImageEncoder, ImageEncoder
from services.embedding.image_input import ImageLimits
from services.embedding.metrics import DEVICE_INFO
from services.embedding.model_cache import e5_dir, is_prepared, whisper_dir
from services.embedding.priority import lower_this_threads_priority
from services.embedding.servicer import SERVICE_FULL_NAME, EmbeddingServicer
from services.embedding.settings import EmbeddingSettings
from services.embedding.spoken_query import SpokenQueryEmbedder, Transcriber
from services.embedding.text_encoder import (
    BatchableTextEncoder,
    E5TextEncoder,
    MiniLMTextEncoder,
    TextEncoder,
    TextRole,
)
from services.embedding.vector_cache import RedisVectorCache
from shared.grpc_server import GrpcServer, ServiceRegistration, start_grpc_server

log = logging.getLogger(__name__)

EncoderT = TypeVar("EncoderT", BatchableTextEncoder, ImageEncoder, WhisperBase)


class Closeable(Protocol):
    def close(self) -> None:
        """Releases what the object holds; called once the server has stopped taking calls."""
        ...


@dataclass(frozen=True)
class LoadedEncoders:
    """Encoders on their device, warmed up: the default text encoder first, the image encoders, and
    Whisper-base (audio vectors and transcription) when the model cache holds it."""

    placement: DevicePlacement
    texts: list[BatchableTextEncoder]
    images: list[ImageEncoder]
    whisper: WhisperBase | None = None


def load_encoders(settings: EmbeddingSettings) -> LoadedEncoders:
    """Loads every encoder onto the configured device and warms each up.

    Text: multilingual-e5-small (the default) when ``make models`` has prepared the model cache, and
    all-MiniLM-L6-v2 always. Image: EfficientNet-Lite0. Audio and spoken queries: Whisper-base when
    the model cache holds it (int8 on the CPU, float16 on CUDA, by :mod:`device`). ``BUNDLEWISE_EMBEDDING_INT8``
    quantises the text encoders on the CPU and is ignored (with a warning) on CUDA, which runs float16.

    ``BUNDLEWISE_EMBEDDING_TORCH_THREADS`` sizes torch first.

    Raises:
        RuntimeError: CUDA was asked for and is not there.
        FileNotFoundError: packaged weights are missing.
    """
    if settings.embedding_torch_threads is not None:
        torch.set_num_threads(settings.embedding_torch_threads)
    placement = choose_device(settings.embedding_device)
    int8 = settings.embedding_int8
    if int8 and placement.device.type != "cpu":
        log.warning("BUNDLEWISE_EMBEDDING_INT8 is ignored on %s, which runs float16", placement.describe())
        int8 = False
    max_tokens = settings.embedding_max_tokens
    texts: list[BatchableTextEncoder] = []
    if is_prepared(e5_dir(settings.model_cache)):
        texts.append(_timed(lambda: E5TextEncoder.from_cache(settings.model_cache, placement, max_tokens, int8)))
    else:
        log.warning(
            "no multilingual-e5-small in %s (run `make models`); the default text encoder is all-MiniLM-L6-v2",
            settings.model_cache,
        )
    texts.append(_timed(lambda: MiniLMTextEncoder.from_package(placement, max_tokens, int8)))
    images: list[ImageEncoder] = [_timed(lambda: EfficientNetLiteImageEncoder.from_package(placement))]
    whisper = None
    if is_prepared(whisper_dir(settings.model_cache)):
        whisper = _timed(
            lambda: WhisperBase.from_cache(
                settings.model_cache,
                ctranslate2_placement(placement),
                threads=settings.embedding_audio_threads,
                languages=settings.embedding_spoken_languages,
            )
        )
    else:
        log.warning("no whisper-base in %s (run `make models`); audio and spoken queries are off", settings.model_cache)
    for text_encoder in texts:
        _warm_up_text(text_encoder, max_tokens)
    for image_encoder in images:
        _warm_up_image(image_encoder)
    if whisper is not None:
        _warm_up_audio(whisper)
    DEVICE_INFO.labels(placement.describe()).set(1)
    return LoadedEncoders(placement, texts, images, whisper)


def build_service(settings: EmbeddingSettings, encoders: LoadedEncoders) -> tuple[EmbeddingServicer, list[Closeable]]:
    """Wraps the loaded encoders in batchers, the vector cache and the servicer.

    Text and image embedders share one vector cache (keys carry the model version): on exactly
    when ``BUNDLEWISE_REDIS_URL`` is set.

    Returns:
        The servicer, and what to close after the server stops (in that order).
    """
    max_wait_s = settings.embedding_max_wait_ms / 1000.0
    cache = None
    if settings.redis_url:
        cache = RedisVectorCache.from_url(settings.redis_url, settings.namespace, settings.embedding_cache_ttl_s)
        log.info("vector cache: Redis, keys under %s*", cache.key_prefix)
    else:
        log.info("vector cache: off (BUNDLEWISE_REDIS_URL is not set)")
    text_batchers = [
        TextBatcher(
            encoder,
            settings.embedding_max_batch,
            max_wait_s,
            settings.embedding_max_queue,
            settings.embedding_interactive_max_inputs,
        )
        for encoder in encoders.texts
    ]
    image_workers, image_threads = settings.image_workers_on(encoders.placement.device.type, torch.get_num_threads())
    image_batchers = [
        ImageBatcher(
            encoder,
            settings.image_batch_on(encoders.placement.device.type),
            max_wait_s,
            settings.embedding_max_image_queue,
            settings.embedding_interactive_max_inputs,
            workers=image_workers,
            torch_threads=image_threads,
        )
        for encoder in encoders.images
    ]
    if image_batchers:
        log.info("images: %d forward passes side by side, %d torch threads each", image_workers, image_threads)
    audio_batchers: list[AudioBatcher] = []
    transcribers: list[Transcriber] = []
    text_embedders = [TextEmbedder(batcher, cache) for batcher in text_batchers]
    image_limits = ImageLimits(settings.embedding_max_image_bytes, settings.embedding_max_image_pixels)
    image_embedders = [ImageEmbedder(batcher, cache, image_limits) for batcher in image_batchers]
    spoken_queries = None
    if encoders.whisper is not None:
        audio_batchers.append(
            AudioBatcher(
                encoders.whisper, settings.embedding_max_audio_batch, max_wait_s, settings.embedding_max_audio_queue
            )
        )
        transcribers.append(
            Transcriber(encoders.whisper, settings.embedding_max_spoken_queue, settings.embedding_max_spoken_batch)
        )
        spoken_queries = SpokenQueryEmbedder(
            transcribers[0], text_embedders[0], settings.embedding_spoken_query_timeout_s
        )
    fusion, no_fusion_reason = load_item_fusion(
        settings.embedding_fusion_path,
        text_embedders[0].encoder.version,
        image_embedders[0].encoder.version if image_embedders else None,
    )
    servicer = EmbeddingServicer(
        text_embedders,
        settings.embedding_max_text_chars,
        image_embedders=image_embedders,
        image_root=settings.embedding_image_root,
        audio_embedders=[AudioEmbedder(batcher) for batcher in audio_batchers],
        audio_limits=AudioLimits(settings.embedding_max_audio_bytes, settings.embedding_max_audio_seconds),
        spoken_queries=spoken_queries,
        item_fusion=fusion,
        no_item_fusion_reason=no_fusion_reason,
    )
    closeables: list[Closeable] = [*text_batchers, *image_batchers, *audio_batchers, *transcribers]
    if cache is not None:
        closeables.append(cache)
    return servicer, closeables


def load_item_fusion(
    path: Path, text_model_version: str, image_model_version: str | None
) -> tuple[ItemFusion | None, str]:
    """The item fusion at ``path`` if it was trained on these encoders; else None and why (logged:
    the rest of the service runs without it, and EmbedItems answers NOT_FOUND with the reason)."""
    try:
        fusion = ItemFusion.load(path)
        fusion.check_encoders(text_model_version, image_model_version)
    except (FileNotFoundError, ValueError) as error:  # FusionMismatch is a ValueError
        reason = f"EmbedItems is off: {error}"
        log.warning(reason)
        return None, reason
    log.info("item fusion %s from %s (dim %d)", fusion.version, path, fusion.dim)
    return fusion, ""


def _timed(load: Callable[[], EncoderT]) -> EncoderT:
    started = time.perf_counter()
    encoder = load()
    log.info(
        "loaded %s (dim %d) on %s in %.1f s",
        encoder.version,
        encoder.dim,
        encoder.device,
        time.perf_counter() - started,
    )
    return encoder


def _warm_up_text(encoder: TextEncoder, max_tokens: int) -> None:
    # The first forward passes pay for lazy initialisation (kernels, allocator pools); pay it here,
    # at the longest sequence too, rather than on the first caller's clock.
    encoder.encode(["usb-c charging cable", "wireless mouse"], TextRole.PASSAGE)
    encoder.encode(["word " * max_tokens] * 4, TextRole.QUERY)


def _warm_up_image(encoder: ImageEncoder) -> None:
    encoder.encode([encoder.preprocess(Image.new("RGB", (320, 240), (200, 120, 40)))] * 2)


def _warm_up_audio(whisper: WhisperBase) -> None:
    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    whisper.encode([whisper.features(tone)] * 2)
    whisper.transcribe(whisper.window_features(tone), "en")


def start_service(
    settings: EmbeddingSettings,
    encoders: LoadedEncoders | None = None,
    metrics_service: str = "embedding",
    grace_s: float = 10.0,
) -> GrpcServer:
    """Builds the service (:func:`build_service`) and serves it on ``settings.grpc_port`` with health,
    metrics (named after ``metrics_service``) and error mapping; stopping the server closes what the
    service opened."""
    encoders = encoders or load_encoders(settings)
    servicer, closeables = build_service(settings, encoders)
    server = start_grpc_server(
        metrics_service,
        [
            ServiceRegistration(
                SERVICE_FULL_NAME,
                lambda grpc_server: embedding_pb2_grpc.add_EmbeddingServicer_to_server(servicer, grpc_server),
            )
        ],
        settings.grpc_port,
        settings.metrics_port,
        grace_s=grace_s,
        # On the CPU, handling requests must not preempt the forward passes (services/embedding/priority.py).
        handler_thread_setup=lower_this_threads_priority if encoders.placement.device.type == "cpu" else None,
    )
    server.on_stop.extend(closeable.close for closeable in closeables)
    return server
