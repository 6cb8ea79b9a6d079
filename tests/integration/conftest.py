"""The integration suite's stack: the real PostgreSQL, Redis and Kafka of `make up`, and every
service as a process, isolated from live state by its own namespace (schema + Redis prefix) and its
own topics. Nothing here is mocked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kafka.admin import KafkaAdminClient
from sqlalchemy import Engine, create_engine, text

from scripts.local_stack import LocalStack
from shared.kafka import ensure_topics
from shared.store.migrate import make_engine, upgrade_to_head
from shared.store.rebuild import drop_namespace_keys
from tests.integration.servers import KAFKA, POSTGRES_URL, REDIS_URL

PARTITIONS = 3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def namespace(run_id: str) -> str:
    return f"it_{run_id}"


@pytest.fixture(scope="session")
def topics(run_id: str) -> Iterator[dict[str, str]]:
    names = {"events": f"it-{run_id}.events.v1", "deadletter": f"it-{run_id}.events.deadletter.v1"}
    ensure_topics(KAFKA, {names["events"]: PARTITIONS, names["deadletter"]: 1})
    yield names
    admin = KafkaAdminClient(bootstrap_servers=KAFKA)
    try:
        admin.delete_topics(list(names.values()))
    finally:
        admin.close()


@pytest.fixture(scope="session")
def stack_env(namespace: str, topics: dict[str, str]) -> dict[str, str]:
    return {
        "BUNDLEWISE_POSTGRES_URL": POSTGRES_URL,
        "BUNDLEWISE_REDIS_URL": REDIS_URL,
        "BUNDLEWISE_KAFKA_BOOTSTRAP": KAFKA,
        "BUNDLEWISE_NAMESPACE": namespace,
        "BUNDLEWISE_EVENTS_TOPIC": topics["events"],
        "BUNDLEWISE_DEADLETTER_TOPIC": topics["deadletter"],
        "BUNDLEWISE_EVENTS_PARTITIONS": str(PARTITIONS),
        "BUNDLEWISE_POLICY_PUBLISH_EVERY_S": "1",
        "BUNDLEWISE_POLICY_REFRESH_S": "1",
        # Impressions close (and the contextual bandit learns from them) 2 s of event time after them.
        "BUNDLEWISE_POLICY_JOIN_WINDOW_S": "2",
        "BUNDLEWISE_POLICY_JOIN_LATENESS_S": "0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


@pytest.fixture(scope="session")
def engine(namespace: str) -> Iterator[Engine]:
    upgrade_to_head(POSTGRES_URL, namespace)
    engine = make_engine(POSTGRES_URL, namespace)
    yield engine
    engine.dispose()
    with create_engine(POSTGRES_URL).begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE'))


@pytest.fixture(scope="session")
def redis_client(namespace: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    drop_namespace_keys(client, namespace)
    client.close()


@pytest.fixture(scope="session")
def stack(stack_env: dict[str, str], engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Every service running, in the test namespace. Services must stop gracefully at the end."""
    log_dir = Path(tmp_path_factory.mktemp("service-logs"))
    local = LocalStack.with_free_ports(stack_env, log_dir)
    try:
        local.start()
    except RuntimeError:
        local.stop()
        raise
    yield local
    codes = local.stop()
    assert codes == dict.fromkeys(codes, 0), f"services did not stop gracefully: {codes}; logs in {log_dir}"
