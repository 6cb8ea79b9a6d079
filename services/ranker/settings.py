from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from shared.events import SHADOW_POLICY_LABEL_PATTERN
from shared.settings import BaseServiceSettings


class RankerSettings(BaseServiceSettings):
    grpc_port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int = Field(default=9103, ge=0, le=65535)
    featurestore_addr: str | None = Field(
        default=None, min_length=1, description="host:port of the feature store, when feature_reads is featurestore."
    )
    policy_addr: str = Field(min_length=1)
    featurestore_timeout_s: float = Field(default=0.5, gt=0)
    policy_timeout_s: float = Field(default=1.0, gt=0)
    # How often the ranker asks the policy service for a newer version.
    policy_refresh_s: float = Field(default=5.0, gt=0)
    feature_reads: Literal["redis", "featurestore"] = Field(
        default="redis",
        description="redis: read the online store in process (docs/adr/0003); featurestore: over its gRPC API.",
    )
    redis_url: str | None = Field(
        default=None, pattern=r"^rediss?://", description="The feature store's Redis, when feature_reads is redis."
    )
    namespace: str = Field(default="live", pattern="^[a-z][a-z0-9_]{0,30}$")
    postgres_url: str | None = Field(
        default=None,
        pattern=r"^postgresql(\+psycopg)?://",
        description="Where published model versions are recorded; unset: no trained models are served.",
    )
    model_refresh_s: float = Field(default=10.0, gt=0, description="How often to look for a newer model version.")
    embedding_addr: str | None = Field(
        default=None,
        min_length=1,
        description="host:port of the embedding service, which embeds search queries; unset: SearchBundles "
        "answers UNIMPLEMENTED.",
    )
    embedding_timeout_s: float = Field(default=0.5, gt=0, description="Deadline of each query embedding.")
    catalog_max_age_s: float = Field(
        default=60.0, gt=0, description="A catalog copy older than this is reloaded in the background."
    )

    shadow_policy_file: Path | None = Field(
        default=None,
        description="Candidate policy params (the JSON `python -m services.policy.rollout promote --params` "
        "takes) to run in shadow beside the served policy; unset: no shadow.",
    )
    shadow_policy: str | None = Field(
        default=None,
        pattern=SHADOW_POLICY_LABEL_PATTERN,
        description="The shadow candidate's name:version, as impressions log it (shadow_policy).",
    )
    shadow_policy_catalog: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="The catalog the shadow candidate scores."
    )

    @model_validator(mode="after")
    def _shadow_settings_together(self) -> RankerSettings:
        shadow = {
            "BUNDLEWISE_SHADOW_POLICY_FILE": self.shadow_policy_file,
            "BUNDLEWISE_SHADOW_POLICY": self.shadow_policy,
            "BUNDLEWISE_SHADOW_POLICY_CATALOG": self.shadow_policy_catalog,
        }
        missing = [name for name, value in shadow.items() if value is None]
        if 0 < len(missing) < len(shadow):
            raise ValueError(f"a shadow policy needs all of {', '.join(shadow)}; set {', '.join(missing)} too")
        return self

    @model_validator(mode="after")
    def _redis_when_reading_redis(self) -> RankerSettings:
        if self.feature_reads == "redis" and self.redis_url is None:
            raise ValueError(
                "BUNDLEWISE_REDIS_URL is required when BUNDLEWISE_FEATURE_READS is redis (the default); "
                "set it, or set BUNDLEWISE_FEATURE_READS=featurestore"
            )
        if self.feature_reads == "featurestore" and self.featurestore_addr is None:
            raise ValueError("BUNDLEWISE_FEATURESTORE_ADDR is required when BUNDLEWISE_FEATURE_READS is featurestore")
        return self
