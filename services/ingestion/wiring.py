"""The one place where the ingestion service's adapters are constructed."""

from __future__ import annotations

import redis
from kafka import KafkaConsumer

from services.ingestion.consumer import IngestionLoop
from services.ingestion.settings import IngestionSettings
from shared.kafka import make_consumer, make_producer
from shared.kafka_stall import GroupMembership
from shared.store.feature_updates import FeatureWriter
from shared.store.migrate import make_engine


def build_loop(settings: IngestionSettings) -> IngestionLoop:
    engine = make_engine(settings.postgres_url, settings.namespace)
    redis_client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, health_check_interval=30)

    def new_consumer() -> tuple[KafkaConsumer, GroupMembership]:
        membership = GroupMembership()
        consumer = make_consumer(
            settings.kafka_bootstrap,
            group_id=settings.group_id(),
            topics=[settings.events_topic],
            client_id="bundlewise-ingestion",
            max_poll_records=settings.max_batch_records,
            listener=membership,
        )
        return consumer, membership

    producer = make_producer(settings.kafka_bootstrap, client_id="bundlewise-ingestion-deadletter")
    consumer, membership = new_consumer()
    return IngestionLoop(
        consumer=consumer,
        membership=membership,
        new_consumer=new_consumer,
        stall_after_s=settings.stall_after_s,
        deadletter_producer=producer,
        deadletter_topic=settings.deadletter_topic,
        writer=FeatureWriter(engine, redis_client, settings.namespace),
        max_batch_records=settings.max_batch_records,
        retry_max_backoff_s=settings.retry_max_backoff_s,
        max_batches_in_flight=settings.max_batches_in_flight,
    )
