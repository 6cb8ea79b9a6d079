"""Embedding benchmark: bare encoders against the embedding service over gRPC, per modality and device.

``python -m benchmarks.embedding`` (``make bench`` runs it) measures, in one run on one machine, for
each device it has (``cpu`` always, ``gpu`` when torch sees CUDA) and each modality it serves:

- ``raw_per_s``: a plain loop in this process over the same encoder class the service uses
  (tokenise or preprocess, then the forward pass, pooling, normalisation), at the best of a few
  batch sizes;
- ``service_per_s``: the real service (``python -m services.embedding`` in its own process, vector
  cache off, max batch = the best raw batch size) under ``--clients`` concurrent gRPC clients, each
  sending calls of ``--per-call`` inputs back to back: every input embedded while they run, the
  latency probes' included, over the time they take;
- ``ratio``: the second over the first (goal on CPU: >= 0.9);
- ``single_p50_ms`` / ``single_p99_ms``: latency of one-input calls (a shopper's query) made one
  after another while the throughput clients keep the service loaded.

The raw and the service pass alternate ``--rounds`` times over the same inputs, against one running
service, and each figure is the median over the rounds: single passes of a few hundred inputs moved
the ratio by up to 0.2 between runs on a shared machine, more than the service's own overhead.

Modalities: ``text_en`` (all-MiniLM-L6-v2), ``text_multi`` (multilingual-e5-small, when ``make
models`` has prepared it), ``image`` (EfficientNet-Lite0, JPEG bytes), ``audio`` (Whisper-base's
pooled encoder with CTranslate2, WAV bytes, when ``make models`` has joined it). Texts are the real
BundleRec_Amazon item titles when the data folder has them (else a generated stand-in, said so in
the results); images are JPEG re-encodings of scikit-learn's two sample photos, resized and cropped
into distinct images; clips are spoken product titles synthesised by espeak-ng (tones when it is
not installed, said so), 1.8 s each. For audio, ``details`` adds ``raw_window_per_s`` (the same
clips padded to Whisper's 30 s window, what the cut saves) and ``spoken_query_p50_ms`` /
``spoken_query_p99_ms`` (EmbedSpokenQuery, one after another, once the throughput clients are done).

``run(...) -> dict`` does the measuring and returns the results; :func:`main` writes them to
``benchmarks/results/embedding.json``; :func:`markdown` renders them for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import torch
from bundlewise.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from benchmarks.provenance import run_metadata
from services.embedding.audio_encoder import WhisperBase
from services.embedding.audio_input import SAMPLE_RATE, AudioLimits, decode_audio
from services.embedding.device import DevicePlacement, choose_device, ctranslate2_placement
from services.embedding.image_encoder import EfficientNetLiteImageEncoder
from services.embedding.image_input import ImageLimits, decode_image
from services.embedding.model_cache import E5_NAME, WHISPER_NAME, e5_dir, is_prepared, whisper_dir
from services.embedding.settings import ModelCacheSettings
from services.embedding.text_encoder import E5TextEncoder, MiniLMTextEncoder, TextEncoder, TextRole
from shared.settings import load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_FILE = REPO_ROOT / "benchmarks" / "results" / "embedding.json"
MODALITIES = ("text_en", "text_multi", "image", "audio")
GOALS = {"cpu_ratio": 0.9, "gpu_text_multi_service_per_s": 50_000}
TEXT_BATCHES = (32, 128, 256)
IMAGE_BATCHES = (4, 8, 16, 32)
AUDIO_BATCHES = (4, 8, 16)
CLIP_SECONDS = 1.8
MAX_TOKENS = 128
DEADLINE_S = 60.0
_LIMITS = ImageLimits(max_bytes=10 * 1024 * 1024, max_pixels=40_000_000)
_AUDIO_LIMITS = AudioLimits(max_bytes=10 * 1024 * 1024, max_seconds=30.0)
_SPOKEN_TITLES = (
    "running shoes for women",
    "wireless noise cancelling headphones",
    "usb c charging cable",
    "a red summer dress",
    "rechargeable double a batteries",
    "leather laptop bag",
)


@dataclass(frozen=True)
class Load:
    """How the service is loaded, and how many times raw and service passes alternate."""

    clients: int
    per_call: int
    latency_calls: int
    rounds: int


@dataclass(frozen=True)
class Workload:
    """What one modality sends: the inputs, and how to embed them raw and through the service."""

    modality: str
    model: str
    inputs: list[Any]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.embedding", description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=1000, help="titles per text measurement")
    parser.add_argument("--images", type=int, default=512, help="images per image measurement")
    parser.add_argument("--clips", type=int, default=256, help="audio clips per audio measurement")
    parser.add_argument("--clients", type=int, default=8, help="concurrent gRPC clients")
    parser.add_argument("--per-call", type=int, default=64, help="texts per throughput call (images: a quarter)")
    parser.add_argument("--latency-calls", type=int, default=60, help="one-input calls for the latency figures")
    parser.add_argument(
        "--modalities", default=",".join(MODALITIES), help=f"comma-separated, of {', '.join(MODALITIES)}"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the raw and the service pass")
    parser.add_argument("--devices", default="auto", help="auto (cpu, and gpu when CUDA is there), cpu or gpu")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch threads, raw and service (0: torch's)")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(
        texts=args.texts,
        images=args.images,
        clips=args.clips,
        clients=args.clients,
        per_call=args.per_call,
        latency_calls=args.latency_calls,
        rounds=args.rounds,
        modalities=tuple(args.modalities.split(",")),
        devices=args.devices,
        torch_threads=args.torch_threads,
        argv=argv,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    return 0


def run(
    texts: int = 1000,
    images: int = 512,
    clips: int = 256,
    clients: int = 8,
    per_call: int = 64,
    latency_calls: int = 60,
    rounds: int = 3,
    modalities: Sequence[str] = MODALITIES,
    devices: str = "auto",
    torch_threads: int = 0,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Measures every modality on every device; returns ``{"cpu": {...}, "gpu": {...}, ...}``.

    Each device section maps a modality to ``raw_per_s``, ``service_per_s``, ``ratio``,
    ``single_p50_ms``, ``single_p99_ms`` and ``details``, or to ``{"status": ...}`` when it was not
    measured. ``gpu`` is ``{"status": "no CUDA device"}`` without a GPU.
    """
    unknown = set(modalities) - set(MODALITIES)
    if unknown or rounds < 1:
        raise ValueError(f"modalities must be among {MODALITIES} (got {sorted(unknown)}) and rounds at least 1")
    if torch_threads:
        torch.set_num_threads(torch_threads)
    titles, titles_source = load_titles(texts)
    photos = make_images(images)
    speech, speech_source = make_clips(clips)
    model_cache = load_settings(ModelCacheSettings).model_cache
    wanted = ["cpu", "gpu"] if devices == "auto" else [devices]
    results: dict[str, Any] = {}
    for device in wanted:
        if device == "gpu" and not torch.cuda.is_available():
            results["gpu"] = {"status": "no CUDA device"}
            continue
        placement = choose_device("cuda" if device == "gpu" else "cpu")
        workloads = [Workload("text_en", "all-MiniLM-L6-v2", titles)]
        if is_prepared(e5_dir(model_cache)):
            workloads.append(Workload("text_multi", E5_NAME, titles))
        workloads.append(Workload("image", "efficientnet-lite0", photos))
        if is_prepared(whisper_dir(model_cache)):
            workloads.append(Workload("audio", WHISPER_NAME, speech))
        section: dict[str, Any] = {}
        load = Load(clients, per_call, latency_calls, rounds)
        for workload in workloads:
            if workload.modality in modalities:
                section[workload.modality] = measure_modality(workload, placement, load, torch_threads, model_cache)
        for modality in MODALITIES:
            if modality not in modalities:
                section[modality] = {"status": "not measured in this run (--modalities)"}
        if "text_multi" not in section:
            section["text_multi"] = {"status": f"{E5_NAME} not prepared in {model_cache}: run make models"}
        if "audio" not in section:
            section["audio"] = {"status": f"{WHISPER_NAME} not prepared in {model_cache}: run make models"}
        results[device] = section
    results["details"] = {
        "titles": titles_source,
        "images": "scikit-learn sample photos (china.jpg, flower.jpg), distinct crops, JPEG quality 90",
        "clients": clients,
        "rounds": rounds,
        "clips": speech_source,
        "per_call": {modality: call_size(modality, per_call) for modality in ("text", "image", "audio")},
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    results["goals"] = GOALS
    results["run"] = run_metadata("benchmarks.embedding", argv)
    return results


# --- inputs ---------------------------------------------------------------------------------------
def load_titles(count: int) -> tuple[list[str], str]:
    """``count`` product titles: the real Amazon ones, repeated as needed, or a generated stand-in."""
    try:
        from shared.datasets import default_data_dir  # noqa: PLC0415
        from shared.datasets.amazon import load_amazon_domain  # noqa: PLC0415

        real = [
            item.title
            for domain in ("electronic", "clothing")
            for item in load_amazon_domain(default_data_dir(), domain).items.values()
            if item.title
        ]
    except Exception as exc:  # any missing or unreadable dataset: fall back, and say so
        words = ("cable", "charger", "case", "stand", "dress", "shirt")
        generated = [f"product {i} {words[i % len(words)]} size {i % 9}" for i in range(count)]
        return generated, f"generated stand-in titles (Amazon titles unavailable: {type(exc).__name__})"
    repeated = (real * (count // len(real) + 1))[:count]
    return repeated, f"BundleRec_Amazon item titles ({len(real):,} distinct, repeated to {count:,})"


def make_images(count: int) -> list[bytes]:
    """``count`` distinct JPEGs cut from scikit-learn's sample photos (or flat colours without it)."""
    try:
        from sklearn.datasets import load_sample_images  # type: ignore[import-untyped]  # noqa: PLC0415

        sources = [Image.fromarray(pixels) for pixels in load_sample_images().images]
    except ImportError:
        sources = [Image.new("RGB", (640, 427), (40 * i % 255, 90, 160)) for i in range(2)]
    out = []
    for index in range(count):
        photo = sources[index % len(sources)]
        shift = index % 97
        crop = photo.crop((shift, shift // 2, photo.width - 96 + shift, photo.height - 48 + shift // 2))
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def make_clips(count: int) -> tuple[list[bytes], str]:
    """``count`` distinct 1.8 s 16 kHz WAV clips: spoken titles by espeak-ng, or tones without it."""
    import numpy as np  # noqa: PLC0415
    import soundfile  # type: ignore[import-untyped]  # noqa: PLC0415

    length = round(CLIP_SECONDS * SAMPLE_RATE)
    try:
        voices = [
            decode_audio(
                subprocess.run(["espeak-ng", "--stdout", title], capture_output=True, check=True).stdout,
                _AUDIO_LIMITS,
                title,
            )
            for title in _SPOKEN_TITLES
        ]
        source = f"{len(_SPOKEN_TITLES)} product titles spoken by espeak-ng, gain varied, {CLIP_SECONDS} s each"
    except (OSError, subprocess.CalledProcessError) as exc:
        times = np.arange(length) / SAMPLE_RATE
        voices = [(0.3 * np.sin(2 * np.pi * (200 + 50 * i) * times)).astype(np.float32) for i in range(6)]
        source = f"tones (espeak-ng unavailable: {type(exc).__name__}), {CLIP_SECONDS} s each"
    out = []
    for index in range(count):
        clip = np.zeros(length, dtype=np.float32)
        voice = voices[index % len(voices)][:length]
        clip[: len(voice)] = voice * (0.5 + 0.5 * (index % 101) / 100)
        buffer = io.BytesIO()
        soundfile.write(buffer, clip, SAMPLE_RATE, format="WAV", subtype="PCM_16")
        out.append(buffer.getvalue())
    return out, source


# --- raw --------------------------------------------------------------------------------------------
def load_encoder(workload: Workload, placement: DevicePlacement, model_cache: Path) -> Any:
    if workload.modality == "audio":
        return WhisperBase.from_cache(model_cache, ctranslate2_placement(placement), threads=torch.get_num_threads())
    if workload.modality == "text_en":
        return MiniLMTextEncoder.from_package(placement, MAX_TOKENS)
    if workload.modality == "text_multi":
        return E5TextEncoder.from_cache(model_cache, placement, MAX_TOKENS)
    return EfficientNetLiteImageEncoder.from_package(placement)


def measure_modality(
    workload: Workload, placement: DevicePlacement, load: Load, torch_threads: int, model_cache: Path
) -> dict[str, Any]:
    """One modality's figures: raw and service passes over the same inputs, alternated ``load.rounds``
    times against one running service.

    ``raw_per_s``, ``service_per_s`` and ``ratio`` are the medians over the rounds (each round's
    ratio is its service pass over its raw pass), so a burst of other work on the machine moves one
    round and not the figure; ``details`` keeps every round's.
    """
    encoder = load_encoder(workload, placement, model_cache)
    step = raw_step(workload, encoder)
    best_batch = choose_batch(workload, step, placement)
    size = call_size(workload.modality, load.per_call)
    probes = max(1, load.latency_calls // load.rounds)
    raw_rates: list[float] = []
    service_rates: list[float] = []
    latencies: list[float] = []
    spoken: list[float] = []
    with (
        embedding_service(placement, best_batch, workload.modality, torch_threads, model_cache) as address,
        grpc.insecure_channel(address) as channel,
    ):
        stub = embedding_pb2_grpc.EmbeddingStub(channel)
        call = call_for(workload, stub)
        call(workload.inputs[:size])
        for _ in range(load.rounds):
            raw_rates.append(raw_pass(workload.inputs, step, best_batch, placement))
            per_s, round_latencies = service_pass(workload.inputs, call, size, load.clients, probes)
            service_rates.append(per_s)
            latencies.extend(round_latencies)
        if workload.modality == "audio":
            spoken = spoken_query_latencies(stub, workload.inputs[: min(20, load.latency_calls)])
    ratios = [service / raw for service, raw in zip(service_rates, raw_rates, strict=True)]
    latencies = latencies or [float("nan")]
    spoken = spoken or [float("nan")]
    figures: dict[str, Any] = {
        "raw_per_s": round(statistics.median(raw_rates), 1),
        "service_per_s": round(statistics.median(service_rates), 1),
        "ratio": round(statistics.median(ratios), 3),
        "single_p50_ms": round(statistics.median(latencies), 2),
        "single_p99_ms": round(percentile(latencies, 0.99), 2),
        "details": {
            "model": workload.model,
            "best_batch": best_batch,
            "inputs": len(workload.inputs),
            "rounds": {
                "raw_per_s": [round(rate, 1) for rate in raw_rates],
                "service_per_s": [round(rate, 1) for rate in service_rates],
                "ratio": [round(ratio, 3) for ratio in ratios],
            },
        },
    }
    if workload.modality == "audio":
        figures["details"] |= {
            "raw_window_per_s": round(measure_raw_window(encoder, workload, best_batch), 2),
            "spoken_query_p50_ms": round(statistics.median(spoken), 1),
            "spoken_query_p99_ms": round(percentile(spoken, 0.99), 1),
        }
    return figures


def choose_batch(workload: Workload, step: Callable[[Sequence[Any]], object], placement: DevicePlacement) -> int:
    """The fastest of a few batch sizes over the inputs (one warm-up batch each first)."""
    batches = {"image": IMAGE_BATCHES, "audio": AUDIO_BATCHES}.get(workload.modality, TEXT_BATCHES)
    best = (0.0, batches[0])
    for batch in batches:
        if batch > len(workload.inputs):
            continue
        step(workload.inputs[:batch])
        synchronize(placement)
        best = max(best, (raw_pass(workload.inputs, step, batch, placement), batch))
    return best[1]


def raw_pass(
    inputs: Sequence[Any], step: Callable[[Sequence[Any]], object], batch: int, placement: DevicePlacement
) -> float:
    """Inputs/s of one pass of the bare loop over ``inputs`` in batches of ``batch`` (whole batches only)."""
    started = time.perf_counter()
    done = 0
    for start in range(0, len(inputs) - batch + 1, batch):
        step(inputs[start : start + batch])
        done += batch
    synchronize(placement)
    return done / (time.perf_counter() - started)


def measure_raw_window(whisper: WhisperBase, workload: Workload, batch: int) -> float:
    """Clips/s of the raw audio loop with every clip padded to Whisper's 30 s window (two batches)."""
    from services.embedding.audio_encoder import AudioFeatures  # noqa: PLC0415

    clips = [decode_audio(clip, _AUDIO_LIMITS, "clip") for clip in workload.inputs[: 2 * batch]]
    started = time.perf_counter()
    for start in range(0, len(clips), batch):
        whisper.encode(
            [AudioFeatures(whisper.window_features(clip), len(clip) // 160) for clip in clips[start : start + batch]]
        )
    return len(clips) / (time.perf_counter() - started)


def raw_step(workload: Workload, encoder: Any) -> Callable[[Sequence[Any]], object]:
    if workload.modality == "audio":
        whisper: WhisperBase = encoder

        def clips(batch: Sequence[Any]) -> object:
            return whisper.encode([whisper.features(decode_audio(b, _AUDIO_LIMITS, "clip")) for b in batch])

        return clips
    if workload.modality == "image":
        image_encoder: EfficientNetLiteImageEncoder = encoder

        def images(batch: Sequence[Any]) -> object:
            return image_encoder.encode([image_encoder.preprocess(decode_image(b, _LIMITS, "image")) for b in batch])

        return images
    text_encoder: TextEncoder = encoder
    return lambda batch: text_encoder.encode(list(batch), TextRole.PASSAGE)


def synchronize(placement: DevicePlacement) -> None:
    if placement.device.type == "cuda":
        torch.cuda.synchronize()


# --- through the service ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def embedding_service(
    placement: DevicePlacement, max_batch: int, modality: str, torch_threads: int, model_cache: Path
) -> Iterator[str]:
    """Runs ``python -m services.embedding`` (cache off) until the block ends; yields its address."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "BUNDLEWISE_REDIS_URL"}
    env |= {
        "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'shared' / 'generated'}",
        "BUNDLEWISE_GRPC_PORT": str(port),
        "BUNDLEWISE_METRICS_PORT": "0",
        "BUNDLEWISE_EMBEDDING_DEVICE": "cuda" if placement.device.type == "cuda" else "cpu",
        "BUNDLEWISE_MODEL_CACHE": str(model_cache),
        "BUNDLEWISE_LOG_LEVEL": "WARNING",
        "BUNDLEWISE_EMBEDDING_MAX_QUEUE": "65536",
        "BUNDLEWISE_EMBEDDING_MAX_IMAGE_QUEUE": "4096",
        "BUNDLEWISE_EMBEDDING_MAX_AUDIO_QUEUE": "4096",
    }
    batch_setting = {"image": "MAX_IMAGE_BATCH", "audio": "MAX_AUDIO_BATCH"}.get(modality, "MAX_BATCH")
    env[f"BUNDLEWISE_EMBEDDING_{batch_setting}"] = str(max_batch)
    if torch_threads:
        env["OMP_NUM_THREADS"] = str(torch_threads)
        env["BUNDLEWISE_EMBEDDING_AUDIO_THREADS"] = str(torch_threads)
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.embedding"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
        )
        address = f"127.0.0.1:{port}"
        try:
            wait_until_serving(address, process, log)
            yield address
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_serving(address: str, process: subprocess.Popen[bytes], log: Any, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the embedding service exited: {log.read().decode()[-2000:]}")
            with contextlib.suppress(grpc.RpcError):
                if (
                    health.Check(health_pb2.HealthCheckRequest(), timeout=1.0).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            time.sleep(0.5)
    raise RuntimeError(f"the embedding service at {address} did not serve within {timeout_s:.0f} s")


def call_for(workload: Workload, stub: embedding_pb2_grpc.EmbeddingStub) -> Callable[[Sequence[Any]], object]:
    if workload.modality == "audio":
        return lambda batch: stub.EmbedAudio(
            embedding_pb2.EmbedAudioRequest(clips=list(batch), model=workload.model), timeout=DEADLINE_S
        )
    if workload.modality == "image":
        return lambda batch: stub.EmbedImages(
            embedding_pb2.EmbedImagesRequest(
                images=[embedding_pb2.ImageInput(data=b) for b in batch], model=workload.model
            ),
            timeout=DEADLINE_S,
        )
    return lambda batch: stub.EmbedTexts(
        embedding_pb2.EmbedTextsRequest(texts=list(batch), model=workload.model, role=embedding_pb2.TEXT_ROLE_PASSAGE),
        timeout=DEADLINE_S,
    )


def call_size(modality: str, per_call: int) -> int:
    """Inputs per throughput call: ``per_call`` texts, a quarter as many images, a sixteenth as many clips."""
    return {"image": max(1, per_call // 4), "audio": max(1, per_call // 16)}.get(modality, per_call)


def service_pass(
    inputs: Sequence[Any], call: Callable[[Sequence[Any]], object], size: int, clients: int, probes: int
) -> tuple[float, list[float]]:
    """Inputs embedded per second while ``clients`` concurrent callers send ``inputs`` in calls of
    ``size`` (the one-input latency probes made meanwhile included), and the probes' latencies in ms."""
    calls = [inputs[start : start + size] for start in range(0, len(inputs), size)]
    lock = threading.Lock()
    queue = iter(calls)
    done = 0

    def client() -> None:
        nonlocal done
        while True:
            with lock:
                batch = next(queue, None)
            if batch is None:
                return
            call(batch)
            with lock:
                done += len(batch)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    latencies = []
    single = inputs[:1]
    for _ in range(probes):
        if not any(thread.is_alive() for thread in threads):
            break
        probe_start = time.perf_counter()
        call(single)
        latencies.append((time.perf_counter() - probe_start) * 1000.0)
        # The probes are embedded while the clients run, so they count: with a few hundred
        # images, leaving them out understated the service's rate by up to a quarter.
        with lock:
            done += len(single)
    for thread in threads:
        thread.join()
    return done / (time.perf_counter() - started), latencies


def spoken_query_latencies(stub: embedding_pb2_grpc.EmbeddingStub, clips: Sequence[bytes]) -> list[float]:
    """Milliseconds of EmbedSpokenQuery per clip, one after another on an otherwise idle service
    (transcription dominates: a 30 s window, so a few clips suffice)."""
    spoken = []
    for clip in clips:
        started = time.perf_counter()
        stub.EmbedSpokenQuery(embedding_pb2.EmbedSpokenQueryRequest(audio=clip), timeout=DEADLINE_S)
        spoken.append((time.perf_counter() - started) * 1000.0)
    return spoken


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# --- bookkeeping ----------------------------------------------------------------------------------


def markdown(results: Mapping[str, Any]) -> str:
    """This benchmark's section of docs/benchmarks.md."""
    rows = []
    for device in ("cpu", "gpu"):
        section = results.get(device, {"status": "not run"})
        if "status" in section:
            rows.append(f"| {device} | all | {section['status']} | | | | |")
            continue
        for modality in ("text_en", "text_multi", "image", "audio"):
            figures = section.get(modality, {"status": "not run"})
            if "status" in figures:
                rows.append(f"| {device} | {modality} | {figures['status']} | | | | |")
                continue
            rows.append(
                f"| {device} | {modality} | {figures['raw_per_s']:,.0f} | {figures['service_per_s']:,.0f} | "
                f"{figures['ratio']:.3f} | {figures['single_p50_ms']:.1f} | {figures['single_p99_ms']:.1f} |"
            )
    details, run_info = results["details"], results["run"]
    machine = run_info["machine"]
    gpu = f" GPU: {details['cuda_device']}." if details.get("cuda_device") else ""
    audio_notes = ""
    for device in ("cpu", "gpu"):
        audio = results.get(device, {}).get("audio", {})
        if "details" in audio:
            extra = audio["details"]
            audio_notes += (
                f"\nAudio on {device}: clips padded to Whisper's 30 s window instead of cut, "
                f"{extra['raw_window_per_s']:,.1f} clips/s raw; spoken query (transcript and e5 query vector) "
                f"p50 {extra['spoken_query_p50_ms']:.0f} ms, p99 {extra['spoken_query_p99_ms']:.0f} ms."
            )
    table = "\n".join(rows)
    return f"""## Embedding (`benchmarks/embedding.py`)

Bare encoder loop (`raw_per_s`, best batch size) against the embedding service over gRPC
(`service_per_s`, {details["clients"]} concurrent clients, {details["per_call"]["text"]} texts, \
{details["per_call"]["image"]} images or {details["per_call"].get("audio", "-")} clips per call, vector cache \
off), and one-input latency under that load; the two passes alternate {details.get("rounds", 1)} times over \
the same inputs against one running service, and each figure is the median of the rounds. \
Goal: ratio ≥ {results["goals"]["cpu_ratio"]} on CPU. \
Texts: {details["titles"]}. Images: {details["images"]}. Clips: {details.get("clips", "-")}.{audio_notes}

| device | modality | raw_per_s | service_per_s | ratio | single p50 ms | single p99 ms |
|---|---|---|---|---|---|---|
{table}

Machine: {machine["cpu_model"]}, {machine["cores"]} cores, torch threads {details["torch_threads"]} (load average \
{machine["load_average_at_end"]} at the end).{gpu} Commit `{run_info["commit"][:12]}`\
{" (with uncommitted changes)" if run_info["dirty"] else ""}, {run_info["date"]}. Command: `{run_info["command"]}`.
Figures in `benchmarks/results/embedding.json`.
"""


if __name__ == "__main__":
    sys.exit(main())
