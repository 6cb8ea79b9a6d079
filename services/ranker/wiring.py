"""The one place where the ranker's adapters are constructed."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from services.ranker.embedding_client import GrpcQueryEncoder
from services.ranker.featurestore_client import GrpcFeatureSource
from services.ranker.models import ModelStore
from services.ranker.policy_client import RefreshingPolicySource
from services.ranker.ports import FeatureSource
from services.ranker.recommender import Recommender
from services.ranker.redis_features import RedisFeatureSource
from services.ranker.search import BundleSearch
from services.ranker.servicer import RankerServicer
from services.ranker.settings import RankerSettings
from services.ranker.shadow_policy import ShadowPolicy, load_shadow_policy
from shared.grpc_client import open_channel
from shared.store.migrate import make_engine

log = logging.getLogger(__name__)


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
    search, search_off_reason = bundle_search(settings, features, in_process)
    recommender = Recommender(
        features, policies, models, shadow_policies(settings), item_vectors=in_process, live_bundles=in_process
    )
    servicer = RankerServicer(recommender, search, search_off_reason)
    return RankerService(servicer, policies, models, in_process)


def shadow_policies(settings: RankerSettings) -> dict[str, ShadowPolicy]:
    """The candidate run in shadow, by catalog: none unless BUNDLEWISE_SHADOW_POLICY_FILE is set.

    Raises:
        shared.settings.SettingsError: the file is unreadable or not candidate params.
    """
    if settings.shadow_policy_file is None:
        return {}
    # The settings refuse one of the three without the others.
    assert settings.shadow_policy is not None
    assert settings.shadow_policy_catalog is not None
    shadow = load_shadow_policy(settings.shadow_policy_file, settings.shadow_policy_catalog, settings.shadow_policy)
    log.info("shadow policy %s scores catalog %s beside the served policy", shadow.label, shadow.catalog_id)
    return {shadow.catalog_id: shadow}


def bundle_search(
    settings: RankerSettings, features: FeatureSource, in_process: RedisFeatureSource | None
) -> tuple[BundleSearch | None, str]:
    """Typed search over the catalog copies' bundle vectors, or None and why not."""
    if settings.embedding_addr is None:
        return None, "bundle search needs an embedding service: set BUNDLEWISE_EMBEDDING_ADDR on the ranker"
    if in_process is None:
        return None, "bundle search reads the catalog copy: it needs BUNDLEWISE_FEATURE_READS=redis on the ranker"
    encoder = GrpcQueryEncoder(open_channel(settings.embedding_addr), settings.embedding_timeout_s)
    return BundleSearch(features, in_process, encoder), ""
