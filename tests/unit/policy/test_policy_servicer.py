"""GetCurrentPolicy: the servicer's contract in-process, then through a real gRPC server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import grpc
import pytest
from bundlewise.policy.v1 import policy_pb2, policy_pb2_grpc
from sqlalchemy import Engine

from services.policy.domain import Arm, PolicyParams
from services.policy.postgres_snapshots import PostgresSnapshotStore
from services.policy.servicer import PolicyServicer
from services.policy.wiring import SERVICE_FULL_NAME
from shared.bandit_features import FEATURES
from shared.errors import InvalidArgument, NotFound
from shared.grpc_client import open_channel, wait_until_serving
from shared.grpc_server import GrpcServer, ServiceRegistration, start_grpc_server
from shared.store.migrate import make_engine
from tests.unit.policy.policy_testkit import (
    POSTGRES_URL,
    InMemorySnapshotStore,
    bandit_params,
    create_namespace,
    drop_namespace,
)

PARAMS = PolicyParams(
    temperature=0.2,
    ctr_weight=1.5,
    prior_alpha=1.0,
    prior_beta=20.0,
    arms=(Arm("b1", impressions=4, clicks=1, alpha=2.0, beta=23.0), Arm("b2", 0, 0, 1.0, 20.0)),
)
EXPECTED = policy_pb2.PolicySnapshot(
    catalog_id="shop",
    version=1,
    name="beta_ctr",
    temperature=0.2,
    ctr_weight=1.5,
    arms=[
        policy_pb2.BundleArm(bundle_id="b1", alpha=2.0, beta=23.0),
        policy_pb2.BundleArm(bundle_id="b2", alpha=1.0, beta=20.0),
    ],
    exploration=policy_pb2.EXPLORATION_SOFTMAX,
)


class CountingStore(InMemorySnapshotStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def latest(self, catalog_id: str) -> Any:
        self.reads += 1
        return super().latest(catalog_id)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def request(catalog_id: str) -> policy_pb2.GetCurrentPolicyRequest:
    return policy_pb2.GetCurrentPolicyRequest(catalog_id=catalog_id)


def test_serves_the_latest_snapshot_as_the_proto_message() -> None:
    store = CountingStore()
    store.publish("shop", PARAMS, "")

    assert PolicyServicer(store).GetCurrentPolicy(request("shop"), None) == EXPECTED  # type: ignore[arg-type]


def test_answers_from_the_cache_until_the_ttl_passes() -> None:
    store, clock = CountingStore(), Clock()
    servicer = PolicyServicer(store, cache_ttl_s=1.0, clock=clock)
    store.publish("shop", PARAMS, "")
    servicer.GetCurrentPolicy(request("shop"), None)  # type: ignore[arg-type]
    store.publish("shop", PARAMS, "")

    clock.now += 0.9
    cached = servicer.GetCurrentPolicy(request("shop"), None)  # type: ignore[arg-type]
    clock.now += 0.1
    refreshed = servicer.GetCurrentPolicy(request("shop"), None)  # type: ignore[arg-type]

    assert (cached.version, refreshed.version, store.reads) == (1, 2, 2)


def test_an_unpublished_catalog_is_not_found_and_that_answer_is_cached_too() -> None:
    store, clock = CountingStore(), Clock()
    servicer = PolicyServicer(store, cache_ttl_s=1.0, clock=clock)

    for _ in range(2):
        with pytest.raises(NotFound, match=r"^no policy published for catalog shop yet$"):
            servicer.GetCurrentPolicy(request("shop"), None)  # type: ignore[arg-type]
    assert store.reads == 1


@pytest.mark.parametrize("catalog_id", ["", "Shop", "shop!", "x" * 65])
def test_an_invalid_catalog_id_is_refused_without_reading_the_store(catalog_id: str) -> None:
    store = CountingStore()

    with pytest.raises(InvalidArgument, match="is not a valid catalog id"):
        PolicyServicer(store).GetCurrentPolicy(request(catalog_id), None)  # type: ignore[arg-type]
    assert store.reads == 0


@pytest.fixture(scope="module")
def grpc_engine(infra: None) -> Iterator[Engine]:
    # Module-scoped like the server: a gRPC server registers its metrics once per process.
    namespace = create_namespace()
    engine = make_engine(POSTGRES_URL, namespace)
    yield engine
    engine.dispose()
    drop_namespace(namespace)


@pytest.fixture(scope="module")
def server(grpc_engine: Engine) -> Iterator[GrpcServer]:
    servicer = PolicyServicer(PostgresSnapshotStore(grpc_engine), cache_ttl_s=0.0)
    registration = ServiceRegistration(
        SERVICE_FULL_NAME, lambda s: policy_pb2_grpc.add_PolicyServicer_to_server(servicer, s)
    )
    server = start_grpc_server("policy", [registration], port=0, metrics_port=0, grace_s=1.0)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stub(server: GrpcServer) -> Iterator[policy_pb2_grpc.PolicyStub]:
    channel = open_channel(f"127.0.0.1:{server.port}")
    wait_until_serving(channel, SERVICE_FULL_NAME, timeout_s=10)
    yield policy_pb2_grpc.PolicyStub(channel)
    channel.close()


@pytest.mark.integration
def test_grpc_not_found_until_a_policy_is_published_then_the_snapshot(
    grpc_engine: Engine, stub: policy_pb2_grpc.PolicyStub
) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetCurrentPolicy(request("shop"), timeout=5)
    assert (missing.value.code(), missing.value.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "no policy published for catalog shop yet",
    )

    PostgresSnapshotStore(grpc_engine).publish("shop", PARAMS, "")

    assert stub.GetCurrentPolicy(request("shop"), timeout=5) == EXPECTED


@pytest.mark.integration
def test_grpc_invalid_catalog_id_is_invalid_argument(stub: policy_pb2_grpc.PolicyStub) -> None:
    with pytest.raises(grpc.RpcError) as invalid:
        stub.GetCurrentPolicy(request("Not A Catalog"), timeout=5)

    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_bandit_is_served_as_feature_names_weights_and_each_arms_bandit_bias() -> None:
    store = CountingStore()
    bandit = bandit_params(weights=(0.5, 0.25, 0.0, 0.125, -0.75, 1.5), biases={"b1": 0.375, "b0": -0.25})
    store.publish("shop", replace(PARAMS, exploration="epsilon_mixture", epsilon=0.1, bandit=bandit), "")

    served = PolicyServicer(store).GetCurrentPolicy(request("shop"), None)  # type: ignore[arg-type]

    assert served == policy_pb2.PolicySnapshot(
        catalog_id="shop",
        version=1,
        name="hybrid_linucb",
        temperature=0.2,
        ctr_weight=1.5,
        arms=[
            policy_pb2.BundleArm(bundle_id="b1", alpha=2.0, beta=23.0, bandit_bias=0.375),
            policy_pb2.BundleArm(bundle_id="b2", alpha=1.0, beta=20.0, bandit_bias=0.0),
            # Known only to the bandit: the Beta prior as its click rate.
            policy_pb2.BundleArm(bundle_id="b0", alpha=1.0, beta=20.0, bandit_bias=-0.25),
        ],
        exploration=policy_pb2.EXPLORATION_EPSILON_MIXTURE,
        epsilon=0.1,
        feature_names=list(FEATURES),
        feature_weights=[0.5, 0.25, 0.0, 0.125, -0.75, 1.5],
    )


@pytest.mark.integration
def test_grpc_serves_a_bandit_snapshot_read_back_from_postgresql(
    grpc_engine: Engine, stub: policy_pb2_grpc.PolicyStub
) -> None:
    bandit = bandit_params(weights=(0.5, 0.25, 0.0, 0.125, -0.75, 1.5), biases={"b2": 0.625})
    PostgresSnapshotStore(grpc_engine).publish("garden", replace(PARAMS, bandit=bandit), "")

    served = stub.GetCurrentPolicy(request("garden"), timeout=5)

    assert (list(served.feature_names), list(served.feature_weights)) == (
        list(FEATURES),
        [0.5, 0.25, 0.0, 0.125, -0.75, 1.5],
    )
    assert {arm.bundle_id: arm.bandit_bias for arm in served.arms} == {"b1": 0.0, "b2": 0.625}
