"""The one place where the policy service's adapters are constructed and connected."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import grpc
from bundlewise.policy.v1 import policy_pb2, policy_pb2_grpc
from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition
from sqlalchemy import Engine

from services.policy.bandit import CatalogBandits
from services.policy.domain import CONTEXTUAL_BANDIT, BetaArms, LogPartition
from services.policy.postgres_snapshots import PostgresSnapshotStore
from services.policy.rollout import RefreshGuard
from services.policy.servicer import PolicyServicer
from services.policy.settings import PolicySettings
from services.policy.updater import LogRecord, PolicyUpdater, RewardJoin
from shared.errors import Unavailable
from shared.grpc_server import ServiceRegistration
from shared.kafka import make_consumer
from shared.kafka_replay import ReplayError, make_reader, read_ranges
from shared.kafka_stall import GroupMembership
from shared.store.migrate import make_engine

SERVICE_FULL_NAME = policy_pb2.DESCRIPTOR.services_by_name["Policy"].full_name


@dataclass(frozen=True)
class PolicyService:
    """The built service: a learning loop to start and a servicer to register on a gRPC server."""

    engine: Engine
    store: PostgresSnapshotStore
    updater: PolicyUpdater
    servicer: PolicyServicer
    registration: ServiceRegistration

    def close(self) -> None:
        """Stops the updater (publishing and committing what it learned) and closes the pool."""
        self.updater.stop()
        self.engine.dispose()


def consumer_group(namespace: str) -> str:
    return f"bundlewise-policy-{namespace}"


def build_policy_service(settings: PolicySettings) -> PolicyService:
    """Constructs everything; connects to nothing until the updater starts or a request comes in."""
    engine = make_engine(settings.postgres_url, settings.namespace)
    store = PostgresSnapshotStore(engine)
    learner = BetaArms(
        temperature=settings.policy_temperature,
        ctr_weight=settings.policy_ctr_weight,
        prior_alpha=settings.policy_prior_alpha,
        prior_beta=settings.policy_prior_beta,
        max_arms=settings.policy_max_arms,
        dedup_window=settings.policy_dedup_window,
        exploration=settings.policy_served_exploration,
        epsilon=settings.policy_epsilon,
    )
    bandit = (
        CatalogBandits(settings.policy_bandit_config, max_bundles=settings.policy_max_arms)
        if settings.policy_kind == CONTEXTUAL_BANDIT
        else None
    )

    def new_consumer() -> tuple[KafkaConsumer, GroupMembership]:
        membership = GroupMembership()
        consumer = make_consumer(
            settings.kafka_bootstrap,
            consumer_group(settings.namespace),
            [settings.events_topic],
            client_id=f"bundlewise-policy-{settings.namespace}",
            listener=membership,
        )
        return consumer, membership

    def read_window(ranges: Mapping[LogPartition, tuple[int, int]]) -> Iterator[Sequence[LogRecord]]:
        # A reader of its own, with no group: the group's offsets stay where the last commit put them.
        try:
            reader = make_reader(settings.kafka_bootstrap, f"bundlewise-policy-{settings.namespace}-rejoin")
        except KafkaError as exc:
            raise Unavailable(f"cannot read the event log again: {exc}") from exc
        try:
            yield from read_ranges(reader, {TopicPartition(t, p): bounds for (t, p), bounds in ranges.items()})
        except (ReplayError, KafkaError) as exc:
            raise Unavailable(f"cannot read the event log again: {exc}") from exc
        finally:
            reader.close()

    rewards = RewardJoin(
        weights=settings.policy_reward_weights,
        window=timedelta(seconds=settings.policy_join_window_s),
        lateness=timedelta(seconds=settings.policy_join_lateness_s),
        max_outcome_ids=settings.policy_dedup_window,
    )
    updater = PolicyUpdater(
        store,
        learner,
        consumer_factory=new_consumer,
        publish_every_s=settings.policy_publish_every_s,
        publish_every_outcomes=settings.policy_publish_every_outcomes,
        guard=RefreshGuard(settings.policy_max_rate_change, settings.policy_bandit_max_step),
        stall_after_s=settings.stall_after_s,
        rewards=rewards,
        window_reader=read_window,
        bandit=bandit,
    )
    servicer = PolicyServicer(store)

    def add_to_server(server: grpc.Server) -> None:
        policy_pb2_grpc.add_PolicyServicer_to_server(servicer, server)

    registration = ServiceRegistration(SERVICE_FULL_NAME, add_to_server)
    return PolicyService(engine, store, updater, servicer, registration)
