"""Kafka clients (kafka-python) configured the one way the project uses them.

Producers wait for every in-sync replica (acks=all) with bounded retries, so an acknowledged event is
really in Kafka. Consumers never auto-commit: a consumer commits offsets only after the writes they
cover are durable. Every client speaks TLS/SASL when ``shared.tls`` settings say so.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterable, Sequence

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from shared.events import Event, encode_event, partition_key
from shared.tls import kafka_security

DEADLETTER_REASON_HEADER = "bundlewise-deadletter-reason"
INGEST_TIME_HEADER = "bundlewise-ingest-time"


def make_producer(bootstrap: str, client_id: str, linger_ms: int = 5, max_block_ms: int = 5000) -> KafkaProducer:
    """A producer whose acknowledged sends are on every in-sync replica.

    ``max_block_ms`` bounds how long ``send`` may block when the broker is unreachable (metadata
    fetch, full buffer), so a caller can answer "unavailable" instead of hanging.
    """
    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        client_id=client_id,
        acks="all",
        retries=5,
        retry_backoff_ms=200,
        request_timeout_ms=10_000,
        delivery_timeout_ms=30_000,
        linger_ms=linger_ms,
        max_block_ms=max_block_ms,
        enable_idempotence=True,
        max_in_flight_requests_per_connection=5,
        compression_type="lz4" if _has_lz4() else None,
        **kafka_security().client_options(),
    )


def make_consumer(
    bootstrap: str,
    group_id: str,
    topics: Sequence[str],
    client_id: str,
    max_poll_records: int = 2000,
    listener: ConsumerRebalanceListener | None = None,
) -> KafkaConsumer:
    """A group consumer with manual commits, reading from the earliest offset of a new group;
    ``listener`` hears of each rebalance."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        fetch_max_wait_ms=100,
        session_timeout_ms=15_000,
        heartbeat_interval_ms=3_000,
        max_poll_interval_ms=300_000,
        isolation_level="read_committed",
        # A consumer that joins before a new topic's metadata reached it is assigned nothing and, with
        # the default 5 minutes, would wait that long to look again; 5 s makes it rejoin promptly.
        metadata_max_age_ms=5_000,
        **kafka_security().client_options(),
    )
    consumer.subscribe(list(topics), listener=listener)
    return consumer


def ensure_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Creates each topic with its partition count if it does not exist (replication factor 1 locally)."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","), client_id="bundlewise-admin", **kafka_security().client_options()
    )
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name, partitions, 1) for name, partitions in topics.items() if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile by another process
                admin.create_topics(missing)
    finally:
        admin.close()


def _has_lz4() -> bool:
    return importlib.util.find_spec("lz4") is not None


def send_events(producer: KafkaProducer, topic: str, events: Iterable[Event], timeout_s: float = 60.0) -> int:
    """Sends events keyed by shopper and waits until Kafka acknowledges every one; returns the count.

    Raises:
        kafka.errors.KafkaError: a send was not acknowledged (nothing after it is assumed sent).
    """
    futures = [producer.send(topic, key=partition_key(e), value=encode_event(e)) for e in events]
    producer.flush(timeout=timeout_s)
    for future in futures:
        future.get(timeout=timeout_s)
    return len(futures)
