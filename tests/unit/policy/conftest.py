"""Fixtures of the policy tests: real PostgreSQL and Kafka in a namespace and topic of their own."""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from sqlalchemy import Engine

from services.policy.settings import PolicySettings
from services.policy.wiring import PolicyService, build_policy_service
from shared.events import Event, encode_event, partition_key
from shared.kafka import ensure_topics, make_producer
from shared.store.migrate import make_engine
from tests.unit.policy.policy_testkit import KAFKA_BOOTSTRAP, POSTGRES_URL, create_namespace, drop_namespace

REPO_ROOT = Path(__file__).resolve().parents[3]


def _infra_down_reason() -> str | None:
    try:
        status = subprocess.run(
            ["bash", "infra/status.sh"], check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run infra/status.sh: {exc}"
    if status.returncode != 0:
        return f"the local stack is not up (infra/status.sh exited {status.returncode}); start it with infra/up.sh"
    postgres = urlsplit(POSTGRES_URL)
    kafka_host, _, kafka_port = KAFKA_BOOTSTRAP.split(",")[0].rpartition(":")
    for name, host, port in [
        ("PostgreSQL", postgres.hostname or "127.0.0.1", postgres.port or 5432),
        ("Kafka", kafka_host, int(kafka_port)),
    ]:
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError as exc:
            return f"{name} at {host}:{port} is not reachable ({exc}); start the stack with infra/up.sh"
    return None


@pytest.fixture(scope="session")
def infra() -> None:
    """Skips the test unless PostgreSQL and Kafka of infra/up.sh are up."""
    reason = _infra_down_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def make_namespace(infra: None) -> Iterator[Callable[[], str]]:
    """Creates freshly migrated PostgreSQL schemas on demand; drops them afterwards."""
    created: list[str] = []

    def make() -> str:
        created.append(create_namespace())
        return created[-1]

    yield make
    for name in created:
        drop_namespace(name)


@pytest.fixture
def namespace(make_namespace: Callable[[], str]) -> str:
    return make_namespace()


@pytest.fixture
def engine(namespace: str) -> Iterator[Engine]:
    engine = make_engine(POSTGRES_URL, namespace)
    yield engine
    engine.dispose()


@pytest.fixture
def events_topic(infra: None) -> Iterator[str]:
    """A new 3-partition topic, deleted afterwards."""
    topic = f"policytest.events.{uuid.uuid4().hex[:12]}"
    ensure_topics(KAFKA_BOOTSTRAP, {topic: 3})
    yield topic
    admin = KafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP.split(","), client_id="policytest-admin")
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()


@pytest.fixture
def kafka_producer(infra: None) -> Iterator[KafkaProducer]:
    """One per test, closed before its topic is deleted: a producer outliving the topic keeps asking
    the cluster for it and logs errors after the test run has closed its output."""
    producer = make_producer(KAFKA_BOOTSTRAP, "policytest")
    yield producer
    producer.close()


@pytest.fixture
def produce(events_topic: str, kafka_producer: KafkaProducer) -> Callable[[list[Event | bytes]], None]:
    """Sends events (or raw bytes) to the test's topic and waits until Kafka acknowledged them."""

    def send(messages: list[Event | bytes]) -> None:
        for message in messages:
            if isinstance(message, bytes):
                kafka_producer.send(events_topic, value=message, key=b"raw")
            else:
                kafka_producer.send(events_topic, value=encode_event(message), key=partition_key(message))
        kafka_producer.flush(timeout=30)

    return send


@pytest.fixture
def settings(namespace: str, events_topic: str) -> PolicySettings:
    """The policy service's settings on this test's schema and topic, publishing every 0.2 s."""
    return PolicySettings(
        postgres_url=POSTGRES_URL,
        namespace=namespace,
        kafka_bootstrap=KAFKA_BOOTSTRAP,
        events_topic=events_topic,
        metrics_port=0,
        policy_publish_every_s=0.2,
    )


@pytest.fixture
def start_service(settings: PolicySettings) -> Iterator[Callable[..., PolicyService]]:
    """Builds and starts policy services; closes every one of them afterwards."""
    started: list[PolicyService] = []

    def start(**overrides: Any) -> PolicyService:
        service = build_policy_service(settings.model_copy(update=overrides))
        started.append(service)
        service.updater.start()
        return service

    yield start
    for service in started:
        service.close()
