from __future__ import annotations

from pydantic import Field

from shared.settings import BaseServiceSettings, KafkaSettings, PostgresSettings, RedisSettings


class IngestionSettings(BaseServiceSettings, PostgresSettings, RedisSettings, KafkaSettings):
    metrics_port: int = Field(default=9105, ge=0, le=65535)
    # Empty means "bundlewise-ingestion-<namespace>": each namespace consumes on its own.
    consumer_group: str = ""
    max_batch_records: int = Field(default=2000, ge=1, le=50_000, description="Records per poll, at most.")
    max_batches_in_flight: int = Field(
        default=2,
        ge=1,
        le=8,
        description="Batches written (PostgreSQL, then Redis) while the next is polled; 1 disables the overlap.",
    )
    retry_max_backoff_s: float = Field(default=5.0, gt=0)
    stall_after_s: float = Field(
        default=30.0,
        ge=5,
        le=3600,
        description="A Kafka consumer out of its group, or not consuming while events wait, this long is replaced.",
    )

    def group_id(self) -> str:
        return self.consumer_group or f"bundlewise-ingestion-{self.namespace}"
