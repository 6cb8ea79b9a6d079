"""One way to run a gRPC server: health service, error mapping, metrics and a graceful stop.

Servicers stay thin and raise :class:`shared.errors.BundlewiseError`; the interceptor here turns
those into status codes and everything else into INTERNAL with a logged traceback.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from shared.errors import BundlewiseError
from shared.metrics import GrpcMetrics, serve_metrics
from shared.tls import grpc_tls

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ServiceRegistration:
    """A servicer to add to the server, and the full name its health status is reported under."""

    full_name: str
    add_to_server: Callable[[grpc.Server], None]


class ErrorMappingInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Maps project errors to status codes and records request count and latency per method."""

    def __init__(self, metrics: GrpcMetrics) -> None:
        self._metrics = metrics

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        inner = handler.unary_unary
        metrics = self._metrics

        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return inner(request, context)
            except BundlewiseError as exc:
                code = exc.grpc_code
                context.abort(exc.grpc_code, str(exc))
            except Exception:
                if context.code() not in (None, grpc.StatusCode.OK):
                    code = context.code()
                    raise
                code = grpc.StatusCode.INTERNAL
                log.exception("unhandled error in %s", method)
                context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")
            finally:
                metrics.requests.labels(method, code.name).inc()
                metrics.latency.labels(method).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@dataclass
class GrpcServer:
    """A started server; :meth:`wait` blocks until SIGTERM/SIGINT, then stops gracefully."""

    server: grpc.Server
    port: int
    metrics_port: int
    health_servicer: health.HealthServicer
    service_names: Sequence[str]
    grace_s: float
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        """Reports NOT_SERVING, lets in-flight calls finish within the grace period, runs on_stop."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        try:
            for name in [*self.service_names, ""]:
                self.health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
            self.server.stop(self.grace_s).wait()
            for callback in self.on_stop:
                callback()
            log.info("stopped")
        finally:
            self._stopped.set()

    def wait(self) -> None:
        def handle(signum: int, _frame: object) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            threading.Thread(target=self.stop, daemon=True).start()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        # Returns only once stop() has finished, on_stop callbacks included (they may flush state).
        while not self._stopped.wait(0.5):
            pass


MAX_CONNECTION_AGE_MS = 5 * 60 * 1000
MAX_CONNECTION_AGE_GRACE_MS = 30 * 1000


def start_grpc_server(
    service: str,
    registrations: Sequence[ServiceRegistration],
    port: int,
    metrics_port: int,
    max_workers: int = 16,
    grace_s: float = 10.0,
    handler_thread_setup: Callable[[], None] | None = None,
) -> GrpcServer:
    """Starts ``registrations`` on ``port`` (0 picks one) with health, metrics and error mapping;
    each handler thread runs ``handler_thread_setup`` once when it starts."""
    metrics = GrpcMetrics(service)
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix=f"{service}-grpc", initializer=handler_thread_setup
        ),
        interceptors=[ErrorMappingInterceptor(metrics)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
            # Clients keep one HTTP/2 connection per resolved pod; ageing connections out makes them
            # re-resolve (dns:/// targets, headless Services) and find the pods added by a scale-up.
            ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
            ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_MS),
        ],
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for registration in registrations:
        registration.add_to_server(server)
    tls = grpc_tls()
    if tls.enabled:
        bound_port = server.add_secure_port(f"0.0.0.0:{port}", tls.server_credentials())
    else:
        bound_port = server.add_insecure_port(f"0.0.0.0:{port}")
    if bound_port == 0:
        raise RuntimeError(f"{service}: could not bind gRPC port {port}; is another process using it?")
    bound_metrics_port = serve_metrics(metrics_port)
    server.start()
    names = [r.full_name for r in registrations]
    for name in [*names, ""]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving gRPC on :%d, metrics on :%d", bound_port, bound_metrics_port)
    return GrpcServer(server, bound_port, bound_metrics_port, health_servicer, names, grace_s)
