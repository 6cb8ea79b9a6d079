"""The one place where the gateway's real adapters are built, connected and closed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.gateway.access import AccessControl, ApiKeyVerifier, RateLimit
from services.gateway.app import create_app
from services.gateway.catalog_store import StoreCatalogEditor
from services.gateway.fallback import FallbackBundleSource
from services.gateway.kafka_publisher import KafkaEventPublisher
from services.gateway.key_store import PostgresKeyStore
from services.gateway.metrics import GatewayMetrics
from services.gateway.popular_bundles import RedisPopularBundles
from services.gateway.ports import BundleSource, KeyStore, RateLimiter, UserDataEraser
from services.gateway.privacy_store import StoreUserEraser
from services.gateway.ranker_client import RankerBundleSource
from services.gateway.rate_limiter import RedisRateLimiter
from services.gateway.settings import GatewaySettings
from services.gateway.speech_client import SpeechTranscriber
from shared.settings import SettingsError

log = logging.getLogger(__name__)


def build_app(settings: GatewaySettings) -> FastAPI:
    """The gateway over Kafka, the ranker, and the feature store's PostgreSQL and Redis.

    Nothing connects here: the Kafka producer is created in the background at start-up (a Kafka that
    is down makes ``POST /v1/events`` answer 503, it does not stop the process), the ranker channel,
    PostgreSQL and Redis connect on first use. Everything is closed when the app shuts down.

    Raises:
        SettingsError: API keys are checked but PostgreSQL, Redis or the pepper is not set.
    """
    unsafe = settings.unsafe_configuration()
    if unsafe is not None:
        raise SettingsError(unsafe)
    metrics = GatewayMetrics.with_process_metrics()
    publisher = KafkaEventPublisher(
        bootstrap=settings.kafka_bootstrap,
        topic=settings.events_topic,
        ack_timeout_s=settings.kafka_ack_timeout_s,
    )
    ranker = RankerBundleSource(address=settings.ranker_addr, timeout_s=settings.ranker_timeout_s)
    transcriber = (
        SpeechTranscriber(address=settings.embedding_addr, timeout_s=settings.spoken_query_timeout_s)
        if settings.embedding_addr
        else None
    )
    popular = (
        RedisPopularBundles(settings.redis_url, settings.namespace, refresh_s=settings.fallback_refresh_s)
        if settings.redis_url is not None
        else None
    )
    bundles = bundle_source(ranker, popular, metrics)
    eraser = user_data_eraser(settings)
    key_store, limiter = access_adapters(settings, metrics)
    access = AccessControl(
        ApiKeyVerifier(key_store, settings.api_key_pepper.get_secret_value(), cache_s=settings.api_key_cache_s)
        if key_store is not None and settings.api_key_pepper is not None
        else None,
        limiter,
        RateLimit(settings.rate_limit_per_s, settings.rate_limit_burst),
        metrics,
    )
    catalog = (
        StoreCatalogEditor(settings.postgres_url, settings.redis_url, settings.namespace)
        if settings.postgres_url is not None and settings.redis_url is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        publisher.start_connecting()
        if popular is not None:
            popular.start()
        log.info(
            "gateway on port %d: events to %s at %s, bundles from the ranker at %s (fallback: %s)",
            settings.http_port,
            settings.events_topic,
            settings.kafka_bootstrap,
            settings.ranker_addr,
            "popular bundles" if popular is not None else "none, BUNDLEWISE_REDIS_URL is not set",
        )
        if not settings.auth_enabled:
            log.warning(
                "API KEYS ARE NOT CHECKED (BUNDLEWISE_AUTH_ENABLED=false): anyone who reaches port %d may read "
                "recommendations, write events and change the catalog, without rate limits. Local experiments only.",
                settings.http_port,
            )
        try:
            yield
        finally:
            await publisher.close()
            await bundles.close()
            for adapter in (eraser, key_store, limiter, catalog, transcriber):
                if adapter is not None:
                    await adapter.close()

    app = create_app(
        settings,
        publisher,
        bundles,
        access=access,
        metrics=metrics,
        catalog=catalog,
        related=ranker,
        search=ranker,
        transcriber=transcriber,
        lifespan=lifespan,
    )
    app.state.privacy = eraser  # read by routes_privacy; None makes DELETE /v1/users/{id} answer 501
    return app


def bundle_source(
    ranker: RankerBundleSource, popular: RedisPopularBundles | None, metrics: GatewayMetrics
) -> BundleSource:
    """What ``GET /v1/users/{user_id}/bundles`` serves from: the ranker, falling back to the catalog's
    popular bundles when it is down or slow (when the gateway has the feature store's Redis)."""
    if popular is None:
        return ranker
    return FallbackBundleSource(ranker, popular, metrics)


def access_adapters(settings: GatewaySettings, metrics: GatewayMetrics) -> tuple[KeyStore | None, RateLimiter | None]:
    """The API keys' store and the rate limiter, or none with auth off."""
    if not settings.auth_enabled or settings.postgres_url is None or settings.redis_url is None:
        return None, None
    return (
        PostgresKeyStore(settings.postgres_url, settings.namespace),
        RedisRateLimiter(settings.redis_url, settings.namespace, metrics, timeout_s=settings.rate_limit_timeout_s),
    )


def user_data_eraser(settings: GatewaySettings) -> UserDataEraser | None:
    """What ``DELETE /v1/users/{user_id}`` deletes through: the feature store's servers, when the
    gateway is given both of their URLs; otherwise none (the route answers 501)."""
    if settings.postgres_url is None or settings.redis_url is None:
        log.info("user deletion is off: BUNDLEWISE_POSTGRES_URL and BUNDLEWISE_REDIS_URL are not both set")
        return None
    return StoreUserEraser(settings.postgres_url, settings.redis_url, settings.namespace)
