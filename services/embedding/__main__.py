"""Entrypoint: ``python -m services.embedding``; builds the service and serves until SIGTERM."""

from __future__ import annotations

from bundlewise.embedding.v1 import embedding_pb2_grpc

from services.embedding.servicer import SERVICE_FULL_NAME
from services.embedding.settings import EmbeddingSettings
from services.embedding.wiring import build_service
from shared.entrypoint import settings_and_logging
from shared.grpc_server import ServiceRegistration, start_grpc_server


def main() -> None:
    settings = settings_and_logging("embedding", EmbeddingSettings)
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
