"""The one place where the ranker's adapters are constructed."""

from __future__ import annotations

from dataclasses import dataclass

from services.ranker.featurestore_client import GrpcFeatureSource
from services.ranker.policy_client import RefreshingPolicySource
from services.ranker.recommender import Recommender
from services.ranker.servicer import RankerServicer
from services.ranker.settings import RankerSettings
from shared.grpc_client import open_channel


@dataclass(frozen=True)
class RankerService:
    servicer: RankerServicer
    policies: RefreshingPolicySource


def build_service(settings: RankerSettings) -> RankerService:
    features = GrpcFeatureSource(open_channel(settings.featurestore_addr), settings.featurestore_timeout_s)
    policies = RefreshingPolicySource(
        open_channel(settings.policy_addr), settings.policy_timeout_s, settings.policy_refresh_s
    )
    return RankerService(RankerServicer(Recommender(features, policies)), policies)
