from __future__ import annotations

from pydantic import Field

from shared.settings import BaseServiceSettings


class RankerSettings(BaseServiceSettings):
    grpc_port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int = Field(default=9103, ge=0, le=65535)
    featurestore_addr: str = Field(min_length=1)
    policy_addr: str = Field(min_length=1)
    featurestore_timeout_s: float = Field(default=0.5, gt=0)
    policy_timeout_s: float = Field(default=1.0, gt=0)
    # How often the ranker asks the policy service for a newer version.
    policy_refresh_s: float = Field(default=5.0, gt=0)
