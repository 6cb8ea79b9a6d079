"""``python -m services.ranker``: serve ranked bundles over gRPC until SIGTERM."""

from __future__ import annotations

import sys

from bundlewise.ranker.v1 import ranker_pb2_grpc

from services.ranker.settings import RankerSettings
from services.ranker.wiring import build_service
from shared.grpc_server import ServiceRegistration, start_grpc_server
from shared.log import configure_logging
from shared.settings import SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings(RankerSettings)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging("ranker", settings.log_level)
    service = build_service(settings)
    service.policies.start()
    server = start_grpc_server(
        "ranker",
        [
            ServiceRegistration(
                "bundlewise.ranker.v1.Ranker",
                lambda s: ranker_pb2_grpc.add_RankerServicer_to_server(service.servicer, s),
            )
        ],
        settings.grpc_port,
        settings.metrics_port,
    )
    server.on_stop.append(service.policies.close)
    server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
