"""The embedding service's Prometheus metrics, declared once per process at import."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS_S, metric_name

SERVICE = "embedding"

BATCH_SIZE = Histogram(
    metric_name(SERVICE, "batch_size"),
    "Inputs per encoder forward pass, by modality (text, image, audio).",
    ["modality"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
QUEUE_DEPTH = Gauge(
    metric_name(SERVICE, "queue_depth"),
    "Inputs accepted and waiting for a forward pass, by modality (speech: spoken queries waiting or transcribing).",
    ["modality"],
)
ENCODE_DURATION = Histogram(
    metric_name(SERVICE, "encode_duration_seconds"),
    "Time of one forward pass on a batcher's worker (text: pad, encode, pool, normalise, tokenising excluded, see"
    " tokenize_duration_seconds; image and audio: stack, encode, pool), by modality; speech: one transcription.",
    ["modality"],
    buckets=LATENCY_BUCKETS_S,
)
TOKENIZE_DURATION = Histogram(
    metric_name(SERVICE, "tokenize_duration_seconds"),
    "Time one text call spends tokenising its texts on its own thread, before queueing them"
    " (not part of encode_duration_seconds).",
    buckets=LATENCY_BUCKETS_S,
)
ENCODED = Counter(
    metric_name(SERVICE, "encoded_total"),
    "Inputs run through an encoder (cache hits are not counted), by modality; speech: clips transcribed.",
    ["modality"],
)
CACHE_LOOKUPS = Counter(
    metric_name(SERVICE, "cache_lookups_total"),
    "Vector cache lookups by modality (text, image) and result (hit, miss); the hit rate is hit / (hit + miss).",
    ["modality", "result"],
)
CACHE_ERRORS = Counter(
    metric_name(SERVICE, "cache_errors_total"),
    "Vector cache reads or writes that failed (the inputs were encoded anyway), by operation.",
    ["operation"],
)
DEVICE_INFO = Gauge(
    metric_name(SERVICE, "device_info"),
    "1 for the device the encoders run on (cpu or cuda:N).",
    ["device"],
)
