"""The gateway's settings, read once from ``BUNDLEWISE_*`` environment variables."""

from __future__ import annotations

from pydantic import Field

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
    kafka_ack_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="How long a batch of events may wait for Kafka's ack."
    )
    max_events_per_request: int = Field(default=500, ge=1, le=10_000)
    max_request_bytes: int = Field(default=1_000_000, ge=1024, description="Largest accepted request body.")
    graceful_shutdown_s: float = Field(
        default=10.0, ge=0, le=120, description="How long in-flight requests may finish after SIGTERM."
    )
    # Only DELETE /v1/users/{user_id} uses the feature store's servers; without both URLs it answers 501.
    postgres_url: str | None = Field(
        default=None,
        pattern=r"^postgresql(\+psycopg)?://",
        description="The feature store's PostgreSQL, for deleting a shopper's data; unset: deletion is off.",
    )
    redis_url: str | None = Field(
        default=None,
        pattern=r"^rediss?://",
        description="The feature store's Redis, for deleting a shopper's data; unset: deletion is off.",
    )
    namespace: str = Field(default="live", pattern="^[a-z][a-z0-9_]{0,30}$", description="Whose data is deleted.")
