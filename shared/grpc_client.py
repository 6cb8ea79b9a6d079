"""Client side of gRPC: channels with sane options and a health wait. Every call passes a deadline."""

from __future__ import annotations

import time

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.grpc_server import MAX_MESSAGE_BYTES
from shared.tls import grpc_tls

# round_robin spreads calls over every address a dns:/// target resolves to (headless Services).
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.keepalive_time_ms", 30_000),
)


def open_channel(address: str) -> grpc.Channel:
    """A channel to ``address`` (``host:port`` or ``dns:///host:port`` for client-side balancing);
    TLS when the process's ``shared.tls`` settings switch it on."""
    tls = grpc_tls()
    if tls.enabled:
        return grpc.secure_channel(address, tls.channel_credentials(), options=CHANNEL_OPTIONS)
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


def open_aio_channel(address: str) -> grpc.aio.Channel:
    """The asyncio twin of :func:`open_channel`; it belongs to the event loop it is made on."""
    tls = grpc_tls()
    if tls.enabled:
        return grpc.aio.secure_channel(address, tls.channel_credentials(), options=CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def wait_until_serving(channel: grpc.Channel, service: str = "", timeout_s: float = 30.0) -> None:
    """Blocks until the server reports SERVING for ``service``.

    Raises:
        TimeoutError: when it does not within ``timeout_s``.
    """
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while time.monotonic() < deadline:
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
            last_error = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as exc:
            last_error = str(exc.code()) if isinstance(exc, grpc.Call) else str(exc)
        time.sleep(0.2)
    raise TimeoutError(f"gRPC service {service or '<server>'} not serving after {timeout_s}s: {last_error}")
