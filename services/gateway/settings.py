"""The gateway's settings, read once from ``BUNDLEWISE_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import BaseServiceSettings, KafkaSettings


class GatewaySettings(BaseServiceSettings, KafkaSettings):
    """Where the gateway listens, what it calls and the limits it enforces on requests.

    Metrics are served on the HTTP port at ``/metrics``, so ``metrics_port`` defaults to 0 and is
    not used by the gateway.
    """

    http_port: int = Field(default=8000, ge=1, le=65535, description="Port of the HTTP API.")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Unused: /metrics is on http_port.")
    ranker_addr: str = Field(min_length=1, description="host:port of the ranker's gRPC server.")
    ranker_timeout_s: float = Field(default=1.0, gt=0, le=30, description="Deadline of each ranker call.")
    embedding_addr: str | None = Field(
        default=None, min_length=1, description="host:port of the embedding service, for spoken search; unset: off."
    )
    spoken_query_timeout_s: float = Field(
        default=10.0, gt=0, le=60, description="Deadline of transcribing one spoken query (about 1 s on a CPU)."
    )
    kafka_ack_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="How long a batch of events may wait for Kafka's ack."
    )
    max_events_per_request: int = Field(default=500, ge=1, le=10_000)
    max_request_bytes: int = Field(default=1_000_000, ge=1024, description="Largest accepted request body.")
    graceful_shutdown_s: float = Field(
        default=10.0, ge=0, le=120, description="How long in-flight requests may finish after SIGTERM."
    )
    # PostgreSQL holds the API keys and the catalog; Redis the rate-limit buckets and the popularity the
    # fallback serves. With auth off (local experiments) both may be unset: deletion, catalog sync
    # and the fallback are then off.
    postgres_url: str | None = Field(
        default=None,
        pattern=r"^postgresql(\+psycopg)?://",
        description="The feature store's PostgreSQL: API keys, catalog sync, deleting a shopper's data.",
    )
    redis_url: str | None = Field(
        default=None,
        pattern=r"^rediss?://",
        description="The feature store's Redis: rate limits, the popular-bundles fallback, deletions.",
    )
    namespace: str = Field(
        default="live", pattern="^[a-z][a-z0-9_]{0,30}$", description="Whose keys, catalog and features."
    )

    auth_enabled: bool = Field(
        default=True,
        description="Check API keys on every /v1 route. False only for local experiments (logged loudly).",
    )
    api_key_pepper: SecretStr | None = Field(
        default=None, min_length=16, description="Secret of the keys' HMACs; the same for bin/bundlewise api-key."
    )
    api_key_cache_s: float = Field(
        default=30.0,
        ge=0,
        le=600,
        description="How long a verified (or unknown) key is trusted without asking PostgreSQL: a revoked "
        "key is refused by every gateway at most this long after the revocation.",
    )
    rate_limit_per_s: float = Field(default=50.0, gt=0, description="Default sustained requests/s per key.")
    rate_limit_burst: int = Field(default=100, ge=1, description="Default requests a key may send at once.")
    rate_limit_timeout_s: float = Field(
        default=0.05, gt=0, le=5, description="Longest wait for Redis before a request is let through unlimited."
    )
    cors_allowed_origins: list[str] = Field(
        default_factory=list,
        description='Origins a browser may call from, JSON list, e.g. ["https://shop.example"]; none by default.',
    )
    fallback_refresh_s: float = Field(
        default=60.0, gt=0, le=3600, description="How often the popular bundles of the fallback are re-read."
    )

    def unsafe_configuration(self) -> str | None:
        """What to set before this gateway may start, or None when nothing is missing."""
        if not self.auth_enabled:
            return None
        missing = [
            name
            for name, value in (
                ("BUNDLEWISE_POSTGRES_URL", self.postgres_url),
                ("BUNDLEWISE_REDIS_URL", self.redis_url),
                ("BUNDLEWISE_API_KEY_PEPPER", self.api_key_pepper),
            )
            if value is None
        ]
        if not missing:
            return None
        return (
            f"API keys are checked (BUNDLEWISE_AUTH_ENABLED is true) but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set: set {'it' if len(missing) == 1 else 'them'} "
            "(the pepper is a secret of at least 16 characters, the same for bin/bundlewise api-key)"
        )
