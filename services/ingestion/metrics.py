"""Ingestion metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS_S, metric_name

EVENTS_PROCESSED = Counter(
    metric_name("ingestion", "events_total"),
    "Events read from Kafka, by type and outcome (applied, duplicate, deadlettered).",
    ["type", "outcome"],
)
DEADLETTERED = Counter(metric_name("ingestion", "deadlettered_total"), "Events sent to the dead-letter topic.")
TRANSIENT_FAILURES = Counter(
    metric_name("ingestion", "transient_failures_total"),
    "Attempts that failed on a transient error and were retried (batch writes, dead-lettering, offset "
    "commits), by dependency (postgres, redis, kafka).",
    ["dependency"],
)
COMMITS_ABANDONED = Counter(
    metric_name("ingestion", "commits_abandoned_total"),
    "Offset commits refused because the group rebalanced; the partitions' next owner reads those batches "
    "again, which changes nothing.",
)
BATCH_DURATION = Histogram(
    metric_name("ingestion", "batch_duration_seconds"),
    "Time to make one batch durable in PostgreSQL and Redis.",
    buckets=LATENCY_BUCKETS_S,
)
CONSUMER_LAG = Gauge(
    metric_name("ingestion", "consumer_lag_messages"),
    "Messages between the committed offset and the end of each partition.",
    ["partition"],
)
FRESHNESS = Histogram(
    metric_name("ingestion", "freshness_seconds"),
    "From the event reaching Kafka (its record timestamp) to its features being visible in Redis.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
ASSIGNED_PARTITIONS = Gauge(
    metric_name("ingestion", "assigned_partitions"),
    "Partitions of the events topic this consumer holds; 0 means it consumes nothing (not ready).",
)
CONSUMER_REPLACEMENTS = Counter(
    metric_name("ingestion", "consumer_replacements_total"),
    "Kafka consumers replaced because they stalled: no partitions, or events waiting and none consumed.",
)
GROUP_MEMBER = Gauge(
    metric_name("ingestion", "group_member"),
    "1 once the consumer has joined its group and holds its assignment (possibly none: a standby); "
    "0 while it joins or rebalances. The service is ready when this is 1.",
)
