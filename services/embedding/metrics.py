"""The embedding service's Prometheus metrics, declared once per process at import."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS_S, metric_name

SERVICE = "embedding"

BATCH_SIZE = Histogram(
    metric_name(SERVICE, "batch_size"),
    "Texts per encoder forward pass.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
QUEUE_DEPTH = Gauge(
    metric_name(SERVICE, "queue_depth"),
    "Texts accepted and waiting for a forward pass.",
)
ENCODE_DURATION = Histogram(
    metric_name(SERVICE, "encode_duration_seconds"),
    "Time of one forward pass (tokenise, encode, pool, normalise), by modality.",
    ["modality"],
    buckets=LATENCY_BUCKETS_S,
)
TEXTS = Counter(
    metric_name(SERVICE, "texts_total"),
    "Texts embedded.",
)
DEVICE_INFO = Gauge(
    metric_name(SERVICE, "device_info"),
    "1 for the device the encoders run on (cpu or cuda:N).",
    ["device"],
)
