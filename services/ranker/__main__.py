"""``python -m services.ranker``: serve ranked bundles over gRPC until SIGTERM."""

from __future__ import annotations

import logging
import sys

from bundlewise.ranker.v1 import ranker_pb2_grpc

from services.ranker.settings import RankerSettings
from services.ranker.wiring import build_service
from shared.entrypoint import settings_and_logging
from shared.grpc_server import ServiceRegistration, start_grpc_server

# How often the ranker looks for catalogs synced after it started, to copy them before they are asked for.
CATALOG_WATCH_S = 5.0


def main() -> int:
    settings = settings_and_logging("ranker", RankerSettings)
    service = build_service(settings)
    service.policies.start()
    if service.features_in_process is not None:
        catalogs = service.features_in_process.warm_up()
        service.policies.prefetch(catalogs)
        logging.getLogger(__name__).info("catalogs and policies loaded before serving: %s", catalogs or "none yet")
        service.features_in_process.watch_for_new_catalogs(CATALOG_WATCH_S, service.policies.prefetch)
    if service.models is not None:
        service.models.start()
    else:
        logging.getLogger(__name__).info("no BUNDLEWISE_POSTGRES_URL: serving without trained models")
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
    if service.models is not None:
        server.on_stop.append(service.models.stop)
    server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
