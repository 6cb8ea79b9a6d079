from __future__ import annotations

from pydantic import Field

from shared.settings import BaseServiceSettings, PostgresSettings, RedisSettings


class FeatureStoreSettings(BaseServiceSettings, PostgresSettings, RedisSettings):
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int = Field(default=9101, ge=0, le=65535)
    default_recent_items: int = Field(default=20, ge=1, le=50)
    default_neighbours: int = Field(default=20, ge=1, le=200)
    default_bundles_per_item: int = Field(default=50, ge=1, le=1000)
