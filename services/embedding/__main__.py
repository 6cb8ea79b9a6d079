"""Entrypoint: ``python -m services.embedding``; builds the service and serves until SIGTERM."""

from __future__ import annotations

from bundlewise.embedding.v1 import embedding_pb2_grpc

from services.embedding.servicer import SERVICE_FULL_NAME
from services.embedding.settings import EmbeddingSettings
from services.embedding.wiring import build_service
from shared.grpc_server import ServiceRegistration, start_grpc_server
from shared.log import configure_logging
from shared.settings import SettingsError, load_settings


def main() -> None:
    try:
        settings = load_settings(EmbeddingSettings)
    except SettingsError as exc:
        raise SystemExit(str(exc)) from None
    configure_logging("embedding", settings.log_level)
    servicer, closeables = build_service(settings)
    server = start_grpc_server(
        "embedding",
        [
            ServiceRegistration(
                SERVICE_FULL_NAME,
                lambda grpc_server: embedding_pb2_grpc.add_EmbeddingServicer_to_server(servicer, grpc_server),
            )
        ],
        settings.grpc_port,
        settings.metrics_port,
    )
    server.on_stop.extend(closeable.close for closeable in closeables)
    server.wait()


if __name__ == "__main__":
    main()
