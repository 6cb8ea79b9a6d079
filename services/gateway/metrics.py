"""The gateway's Prometheus metrics, declared once, and the middleware that records HTTP traffic.

Routes are labelled by their template (``/v1/users/{user_id}/bundles``), never by the raw path, so
label values stay bounded and carry no user ids.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.metrics import LATENCY_BUCKETS_S, metric_name

SERVICE = "gateway"
UNMATCHED_ROUTE = "unmatched"
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


class GatewayMetrics:
    """The gateway's metrics in ``registry`` (one per app, so several apps can live in a process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.http_requests = Counter(
            metric_name(SERVICE, "http_requests_total"),
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_latency = Histogram(
            metric_name(SERVICE, "http_request_duration_seconds"),
            "Time to answer one HTTP request, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.events_published = Counter(
            metric_name(SERVICE, "events_published_total"),
            "Events acknowledged by Kafka, by event type.",
            ["type"],
            registry=registry,
        )
        self.events_rejected = Counter(
            metric_name(SERVICE, "events_rejected_total"),
            "Events refused because they failed validation.",
            registry=registry,
        )
        self.auth_refusals = Counter(
            metric_name(SERVICE, "auth_refusals_total"),
            "Requests refused by API-key checks: missing_key, invalid_key (401) or missing_scope (403).",
            ["reason"],
            registry=registry,
        )
        self.rate_limited = Counter(
            metric_name(SERVICE, "rate_limited_total"),
            "Requests refused with 429 because their API key's token bucket was empty.",
            registry=registry,
        )
        self.rate_limit_unavailable = Counter(
            metric_name(SERVICE, "rate_limit_unavailable_total"),
            "Requests let through without a rate-limit check because Redis could not be asked (fail open).",
            registry=registry,
        )
        self.fallbacks = Counter(
            metric_name(SERVICE, "fallbacks_total"),
            "Bundle answers served from popular bundles instead of the ranker, by reason.",
            ["reason"],
            registry=registry,
        )

    @classmethod
    def with_process_metrics(cls) -> GatewayMetrics:
        """A fresh registry holding the gateway's metrics and the process, platform and GC ones."""
        registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
        return cls(registry)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition and its content type.

        With ``PROMETHEUS_MULTIPROC_DIR`` set (several worker processes), the values of every
        process are aggregated from that directory instead.
        """
        if os.environ.get(MULTIPROC_DIR_VARIABLE):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus_client leaves it untyped
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def route_template(scope: Mapping[str, Any]) -> str:
    """The path template of the route that matched ``scope``, or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None) if isinstance(route, BaseRoute) else None
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """ASGI middleware counting and timing every HTTP request by route template, method and status.

    A request that raises counts as status 500 (the error handler outside answers it so).
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, send_recording_status)
        finally:
            route = route_template(scope)
            method = str(scope["method"])
            self._metrics.http_requests.labels(route=route, method=method, status=str(status)).inc()
            self._metrics.http_latency.labels(route=route, method=method).observe(time.perf_counter() - started)
