"""Entrypoint: ``python -m services.embedding``; builds the service and serves until SIGTERM."""

from __future__ import annotations

from services.embedding.settings import EmbeddingSettings
from services.embedding.wiring import start_service
from shared.entrypoint import settings_and_logging


def main() -> None:
    settings = settings_and_logging("embedding", EmbeddingSettings)
    start_service(settings).wait()


if __name__ == "__main__":
    main()
