"""Prometheus helpers: one naming rule and one way to expose /metrics.

Names follow ``bundlewise_<service>_<thing>_<unit>``; counters end in ``_total``; latency is a
``_seconds`` histogram; labels never carry user or item ids.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def metric_name(service: str, thing: str) -> str:
    """``metric_name("ranker", "grpc_requests_total")`` -> ``bundlewise_ranker_grpc_requests_total``."""
    return f"bundlewise_{service}_{thing}"


def serve_metrics(port: int) -> int:
    """Starts the /metrics HTTP endpoint in a daemon thread; returns the bound port (0 picks one)."""
    server, _thread = start_http_server(port, addr="0.0.0.0")
    return int(server.server_port)


class GrpcMetrics:
    """Request count and latency of one gRPC server, labelled by method and status code."""

    def __init__(self, service: str) -> None:
        self.requests = Counter(
            metric_name(service, "grpc_requests_total"),
            "gRPC requests handled, by method and status code.",
            ["method", "code"],
        )
        self.latency = Histogram(
            metric_name(service, "grpc_request_duration_seconds"),
            "Time to handle one gRPC request, by method.",
            ["method"],
            buckets=LATENCY_BUCKETS_S,
        )
