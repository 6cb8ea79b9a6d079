from __future__ import annotations

from datetime import date

from pydantic import Field

from shared.settings import BaseServiceSettings, PostgresSettings, RedisSettings


class FeatureStoreSettings(BaseServiceSettings, PostgresSettings, RedisSettings):
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int = Field(default=9101, ge=0, le=65535)
    default_recent_items: int = Field(default=20, ge=1, le=50)
    default_neighbours: int = Field(default=20, ge=1, le=200)
    default_bundles_per_item: int = Field(default=50, ge=1, le=1000)
    default_popularity_days: int = Field(default=7, ge=1, le=365)
    feature_clock: date | None = Field(
        default=None,
        description="The day time windows end on (YYYY-MM-DD, event time); unset: today, UTC. Set it to read "
        "replayed history as it was on that day.",
    )
