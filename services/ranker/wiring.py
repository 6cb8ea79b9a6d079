"""The one place where the ranker's adapters are constructed."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from services.ranker.featurestore_client import GrpcFeatureSource
from services.ranker.models import ModelStore
from services.ranker.policy_client import RefreshingPolicySource
from services.ranker.ports import FeatureSource
from services.ranker.recommender import Recommender
from services.ranker.redis_features import RedisFeatureSource
from services.ranker.servicer import RankerServicer
from services.ranker.settings import RankerSettings
from shared.grpc_client import open_channel
from shared.store.migrate import make_engine


@dataclass(frozen=True)
class RankerService:
    servicer: RankerServicer
    policies: RefreshingPolicySource
    models: ModelStore | None
    features_in_process: RedisFeatureSource | None


def build_service(settings: RankerSettings) -> RankerService:
    features: FeatureSource
    in_process = None
    if settings.feature_reads == "redis":
        assert settings.redis_url is not None  # the settings check it
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=2)
        features = RedisFeatureSource(client, settings.namespace, settings.catalog_max_age_s)
        in_process = features
    else:
        assert settings.featurestore_addr is not None  # the settings check it
        features = GrpcFeatureSource(open_channel(settings.featurestore_addr), settings.featurestore_timeout_s)
    policies = RefreshingPolicySource(
        open_channel(settings.policy_addr), settings.policy_timeout_s, settings.policy_refresh_s
    )
    models = (
        ModelStore(make_engine(settings.postgres_url, settings.namespace, pool_size=1), settings.model_refresh_s)
        if settings.postgres_url
        else None
    )
    return RankerService(RankerServicer(Recommender(features, policies, models)), policies, models, in_process)
