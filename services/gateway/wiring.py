"""The one place where the gateway's real adapters are built, connected and closed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.gateway.app import create_app
from services.gateway.kafka_publisher import KafkaEventPublisher
from services.gateway.ports import BundleSource, UserDataEraser
from services.gateway.privacy_store import StoreUserEraser
from services.gateway.ranker_client import RankerBundleSource
from services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


def build_app(settings: GatewaySettings) -> FastAPI:
    """The gateway over Kafka and the ranker.

    Nothing connects here: the Kafka producer is created in the background at start-up (a Kafka that
    is down makes ``POST /v1/events`` answer 503, it does not stop the process) and the ranker
    channel connects on first use. Both are closed when the app shuts down.
    """
    publisher = KafkaEventPublisher(
        bootstrap=settings.kafka_bootstrap,
        topic=settings.events_topic,
        ack_timeout_s=settings.kafka_ack_timeout_s,
    )
    ranker = RankerBundleSource(address=settings.ranker_addr, timeout_s=settings.ranker_timeout_s)
    eraser = user_data_eraser(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        publisher.start_connecting()
        log.info(
            "gateway on port %d: events to %s at %s, bundles from the ranker at %s",
            settings.http_port,
            settings.events_topic,
            settings.kafka_bootstrap,
            settings.ranker_addr,
        )
        try:
            yield
        finally:
            await publisher.close()
            await ranker.close()
            if eraser is not None:
                await eraser.close()

    app = create_app(settings, publisher, bundle_source(ranker), lifespan=lifespan)
    app.state.privacy = eraser  # read by routes_privacy; None makes DELETE /v1/users/{id} answer 501
    return app


def bundle_source(ranker: RankerBundleSource) -> BundleSource:
    """What ``GET /v1/users/{user_id}/bundles`` serves from: the ranker alone for now.

    Fallbacks for when the ranker is unavailable (popular bundles, a cache) go here, as a
    BundleSource that wraps ``ranker``; the routes do not change.
    """
    return ranker


def user_data_eraser(settings: GatewaySettings) -> UserDataEraser | None:
    """What ``DELETE /v1/users/{user_id}`` deletes through: the feature store's servers, when the
    gateway is given both of their URLs; otherwise none (the route answers 501)."""
    if settings.postgres_url is None or settings.redis_url is None:
        log.info("user deletion is off: BUNDLEWISE_POSTGRES_URL and BUNDLEWISE_REDIS_URL are not both set")
        return None
    return StoreUserEraser(settings.postgres_url, settings.redis_url, settings.namespace)
