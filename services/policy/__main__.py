"""Entrypoint: ``python -m services.policy``. Builds the service and serves until SIGTERM."""

from __future__ import annotations

import sys

from services.policy.settings import PolicySettings
from services.policy.wiring import build_policy_service
from shared.grpc_server import start_grpc_server
from shared.log import configure_logging
from shared.settings import SettingsError, load_settings
from shared.store.migrate import upgrade_to_head


def main() -> None:
    try:
        settings = load_settings(PolicySettings)
    except SettingsError as exc:
        sys.exit(str(exc))
    configure_logging("policy", settings.log_level)
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
