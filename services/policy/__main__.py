"""Entrypoint: ``python -m services.policy``. Builds the service and serves until SIGTERM."""

from __future__ import annotations

import sys

from services.policy.settings import PolicySettings
from services.policy.wiring import build_policy_service
from shared.entrypoint import settings_and_logging
from shared.grpc_server import start_grpc_server
from shared.store.migrate import upgrade_to_head


def main() -> None:
    settings = settings_and_logging("policy", PolicySettings)
    upgrade_to_head(settings.postgres_url, settings.namespace)
    service = build_policy_service(settings)
    server = start_grpc_server("policy", [service.registration], settings.grpc_port, settings.metrics_port)
    server.on_stop.append(service.close)
    service.updater.start(on_crash=server.stop)
    server.wait()
    if service.updater.crashed:
        sys.exit(1)


if __name__ == "__main__":
    main()
