"""``python -m services.featurestore``: serve the feature store's gRPC reads until SIGTERM."""

from __future__ import annotations

import sys

import redis
from bundlewise.featurestore.v1 import featurestore_pb2_grpc

from services.featurestore.reads import FeatureReader
from services.featurestore.servicer import FeatureStoreServicer
from services.featurestore.settings import FeatureStoreSettings
from shared.entrypoint import settings_and_logging
from shared.grpc_server import ServiceRegistration, start_grpc_server
from shared.store.migrate import upgrade_to_head


def main() -> int:
    settings = settings_and_logging("featurestore", FeatureStoreSettings)
    upgrade_to_head(settings.postgres_url, settings.namespace)
    redis_client = redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=2)
    servicer = FeatureStoreServicer(FeatureReader(redis_client, settings.namespace), settings)
    server = start_grpc_server(
        "featurestore",
        [
            ServiceRegistration(
                "bundlewise.featurestore.v1.FeatureStore",
                lambda s: featurestore_pb2_grpc.add_FeatureStoreServicer_to_server(servicer, s),
            )
        ],
        settings.grpc_port,
        settings.metrics_port,
    )
    server.on_stop.append(redis_client.close)
    server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
