"""Ingestion benchmark: Kafka -> ingestion service -> PostgreSQL and Redis, on the real servers.

``python -m benchmarks.ingestion`` (``make bench`` runs it) measures, in one run on one broker, with
the same number of consumer processes for each figure:

- ``events_per_s``: a stream of generated events (:mod:`benchmarks.event_generator`) is produced
  into a fresh topic first; then the real ingestion service runs as ``--consumers`` processes
  (``python -m services.ingestion``), and the rate is the events applied between the first applied
  one and the last, read from the per-partition watermarks in Redis (written in the same Lua call
  as the features, after the PostgreSQL commit), then checked against PostgreSQL's row count;
- ``raw_consume_per_s``: as many bare kafka-python consumers (``make_consumer``'s settings, each on
  its share of the partitions) read the same topic and do nothing else;
- ``ratio``: the first over the second;
- ``freshness_p50_s`` / ``freshness_p99_s``: on another fresh topic, events are produced at a fixed
  rate of half ``events_per_s``; an event's freshness is the time from its send to the first poll of
  the watermarks (every 10 ms) that shows it applied, i.e. its features visible in Redis;
- ``consistent``: the namespace's Redis keys equal, key for key, what
  :func:`shared.store.rebuild.rebuild_redis` builds from PostgreSQL afterwards.

Everything runs in its own namespace (PostgreSQL schema, Redis prefix) and topics, dropped at the
end, so it can run beside live traffic; the figures are only as quiet as the machine.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from sqlalchemy import Engine, func, select, text

from benchmarks.event_generator import encoded, generate
from benchmarks.provenance import run_metadata
from scripts.local_stack import REPO_ROOT, LocalStack
from services.featurestore.real_catalogs import RealCatalog, load_amazon
from shared.datasets import default_data_dir
from shared.kafka import ensure_topics
from shared.settings import KafkaSettings, PostgresSettings, RedisSettings, load_settings
from shared.store import tables
from shared.store.catalog import CatalogWriter
from shared.store.migrate import make_engine, upgrade_to_head
from shared.store.rebuild import drop_namespace_keys, dump_namespace, rebuild_redis
from shared.store.redis_keys import NamespaceKeys

NAME = "ingestion"
RESULTS_FILE = REPO_ROOT / "benchmarks" / "results" / "ingestion.json"
DEFAULT_EVENTS = 1_000_000
DEFAULT_CONSUMERS = 2
DEFAULT_PARTITIONS = 6
DEFAULT_SEED = 20140722
DEFAULT_FRESHNESS_S = 30.0
WATERMARK_POLL_S = 0.01
RAW_CONSUMER = "raw-consumer"
GOALS = {"events_per_s": 10_000, "ratio": 0.2, "freshness_p99_s": 1.0}


class BenchSettings(PostgresSettings, RedisSettings, KafkaSettings):
    """Where the servers are: the usual ``BUNDLEWISE_*`` variables (config/local.env)."""


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int

    def watermark_keys(self, namespace: str) -> list[str]:
        keys = NamespaceKeys(namespace)
        return [keys.watermark(self.name, p) for p in range(self.partitions)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingestion", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="events in the throughput stream")
    parser.add_argument("--consumers", type=int, default=DEFAULT_CONSUMERS, help="consumer processes, both runs")
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--freshness-s", type=float, default=DEFAULT_FRESHNESS_S, help="length of the fixed-rate run")
    parser.add_argument(
        "--freshness-rate", type=float, default=0.0, help="events/s of the fixed-rate run (default: half events_per_s)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument("--keep", action="store_true", help="keep the namespace and topics (to look at them)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == [RAW_CONSUMER]:  # one bare consumer process of measure_raw_consume
        bootstrap, topic, *partitions = argv[1:]
        print(json.dumps(raw_consume(bootstrap, topic, [int(p) for p in partitions])))
        return 0
    args = parse_args(argv)
    settings = load_settings(BenchSettings)
    run_id = uuid.uuid4().hex[:8]
    namespace = f"bench_{run_id}"
    work_dir = Path(tempfile.mkdtemp(prefix=f"bw-bench-{run_id}-"))
    print(f"[bench] namespace {namespace}; service logs in {work_dir}", flush=True)
    upgrade_to_head(settings.postgres_url, namespace)
    engine = make_engine(settings.postgres_url, namespace)
    client = redis.Redis.from_url(settings.redis_url)
    topics: list[str] = []
    try:
        catalog = load_amazon(default_data_dir())
        load_catalog(engine, client, namespace, catalog)
        base_env = {
            "BUNDLEWISE_POSTGRES_URL": settings.postgres_url,
            "BUNDLEWISE_REDIS_URL": settings.redis_url,
            "BUNDLEWISE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "BUNDLEWISE_NAMESPACE": namespace,
            "BUNDLEWISE_DEADLETTER_TOPIC": f"bench-{run_id}.events.deadletter.v1",
            "BUNDLEWISE_LOG_LEVEL": "WARNING",
        }
        throughput_topic = Topic(f"bench-{run_id}.throughput.v1", args.partitions)
        freshness_topic = Topic(f"bench-{run_id}.freshness.v1", args.partitions)
        topics = [throughput_topic.name, freshness_topic.name, base_env["BUNDLEWISE_DEADLETTER_TOPIC"]]
        ensure_topics(
            settings.kafka_bootstrap,
            {throughput_topic.name: args.partitions, freshness_topic.name: args.partitions, topics[2]: 1},
        )

        produced, produce_s = produce_all(
            settings.kafka_bootstrap, throughput_topic.name, generate(catalog, args.events, args.seed, "t")
        )
        print(f"[bench] produced {produced} events in {produce_s:.1f}s", flush=True)
        throughput = measure_ingestion(
            base_env, work_dir, throughput_topic, args.consumers, produced, client, namespace, engine
        )
        print(f"[bench] ingestion: {throughput['events_per_s']:.0f} events/s", flush=True)
        raw = measure_raw_consume(settings.kafka_bootstrap, throughput_topic, args.consumers, produced)
        print(f"[bench] raw consume: {raw:.0f} events/s", flush=True)

        rate = args.freshness_rate or throughput["events_per_s"] / 2
        freshness = measure_freshness(
            base_env, work_dir, freshness_topic, args.consumers, catalog, args.seed + 1, rate, args.freshness_s, client
        )
        print(f"[bench] freshness at {rate:.0f}/s: p99 {freshness['freshness_p99_s']:.3f}s", flush=True)
        consistent, rebuild_s = check_consistency(engine, client, namespace)
        print(f"[bench] consistent: {consistent} (rebuild {rebuild_s:.0f}s)", flush=True)

        results = {
            "benchmark": NAME,
            "events_per_s": round(throughput["events_per_s"]),
            "raw_consume_per_s": round(raw),
            "ratio": round(throughput["events_per_s"] / raw, 3),
            "freshness_p50_s": round(freshness["freshness_p50_s"], 3),
            "freshness_p99_s": round(freshness["freshness_p99_s"], 3),
            "consistent": consistent,
            "goals": GOALS,
            "details": {
                "events": produced,
                "produce_s": round(produce_s, 1),
                "ingestion_s": round(throughput["seconds"], 1),
                "consumers": args.consumers,
                "partitions": args.partitions,
                "seed": args.seed,
                "freshness_rate_per_s": round(rate),
                "freshness_events": freshness["events"],
                "freshness_max_s": round(freshness["freshness_max_s"], 3),
                "rebuild_s": round(rebuild_s, 1),
                "kafka_crc32c": kafka_crc32c(),
            },
            "run": run_metadata("benchmarks.ingestion", argv),
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2), flush=True)
        return 0 if consistent else 1
    finally:
        if not args.keep:
            cleanup(engine, client, namespace, settings.kafka_bootstrap, topics)


# --- setup ----------------------------------------------------------------------------------------
def load_catalog(engine: Engine, client: redis.Redis, namespace: str, catalog: RealCatalog) -> None:
    """The Amazon items and bundles (no events), so affinity and bundle features have their catalog."""
    writer = CatalogWriter(engine, client, namespace)
    writer.upsert_catalog(catalog.catalog_id, catalog.name, catalog.source, catalog.currency)
    writer.upsert_items(catalog.catalog_id, catalog.items)
    writer.upsert_bundles(catalog.catalog_id, catalog.bundles)


def produce_all(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]]) -> tuple[int, float]:
    """Sends every (key, value) and waits for Kafka's acknowledgements; returns (count, seconds)."""
    producer = bench_producer(bootstrap)
    failures: list[BaseException] = []
    started = time.perf_counter()
    count = 0
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value).add_errback(failures.append)
            count += 1
        producer.flush(timeout=300)
    finally:
        producer.close()
    if failures:
        raise RuntimeError(f"{len(failures)} sends failed; first: {failures[0]!r}")
    return count, time.perf_counter() - started


def bench_producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        client_id="bundlewise-bench",
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
    )


@contextlib.contextmanager
def ingestion_processes(env: Mapping[str, str], log_dir: Path, count: int) -> Iterator[list[LocalStack]]:
    """``count`` ingestion service processes of one consumer group; stopped (SIGTERM) on exit."""
    stacks = [LocalStack.with_free_ports(env, log_dir / f"ingestion-{i}") for i in range(count)]
    try:
        # Started together, so the group forms once instead of rebalancing as each one joins.
        with ThreadPoolExecutor(count) as starting:
            list(starting.map(lambda stack: stack.start(names=("ingestion",)), stacks))
        yield stacks
    finally:
        codes = [stack.stop() for stack in stacks]
        if any(code != {"ingestion": 0} for code in codes):
            print(f"[bench] WARNING: ingestion exit codes {codes}; logs in {log_dir}", file=sys.stderr)


def applied_count(client: redis.Redis, keys: list[str]) -> int:
    """Events applied so far on a fresh topic of unique events: the sum of (watermark + 1)."""
    return sum(int(w) + 1 for w in client.mget(keys) if w is not None)


# --- the measurements -----------------------------------------------------------------------------
def measure_ingestion(
    base_env: Mapping[str, str],
    work_dir: Path,
    topic: Topic,
    consumers: int,
    total: int,
    client: redis.Redis,
    namespace: str,
    engine: Engine,
) -> dict[str, float]:
    env = {**base_env, "BUNDLEWISE_EVENTS_TOPIC": topic.name, "BUNDLEWISE_CONSUMER_GROUP": f"{topic.name}-ingestion"}
    keys = topic.watermark_keys(namespace)
    with ingestion_processes(env, work_dir / "throughput", consumers):
        first_at, first_count = 0.0, 0
        deadline = time.monotonic() + 1800
        while True:
            now, applied = time.perf_counter(), applied_count(client, keys)
            if applied and not first_at:
                first_at, first_count = now, applied
            if applied >= total:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {applied} of {total} events applied after 30 minutes")
            time.sleep(0.05)
    with engine.connect() as conn:
        rows = int(conn.execute(select(func.count()).select_from(tables.events)).scalar_one())
    if rows != total:
        raise RuntimeError(f"PostgreSQL holds {rows} events, expected {total}")
    seconds = now - first_at
    return {"events_per_s": (total - first_count) / seconds, "seconds": seconds}


def measure_raw_consume(bootstrap: str, topic: Topic, consumers: int, total: int) -> float:
    """Bare consumers, each on its share of the partitions, reading everything; events per second."""
    shares = [list(range(topic.partitions))[i::consumers] for i in range(consumers)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.ingestion", RAW_CONSUMER, bootstrap, topic.name, *map(str, share)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'shared' / 'generated'}"},
        )
        for share in shares
    ]
    reports = []
    for process in processes:
        out, _ = process.communicate(timeout=900)
        if process.returncode != 0:
            raise RuntimeError(f"raw consumer exited with {process.returncode}")
        reports.append(json.loads(out))
    count = sum(r["count"] for r in reports)
    if count != total:
        raise RuntimeError(f"raw consumers read {count} records, expected {total}")
    return float(count / (max(r["last"] for r in reports) - min(r["first"] for r in reports)))


def raw_consume(bootstrap: str, topic: str, partitions: list[int]) -> dict[str, float]:
    """Reads ``partitions`` of ``topic`` to their end, counting records (the raw consumer's body)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        client_id="bundlewise-bench-raw",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=2000,
        fetch_max_wait_ms=100,
        isolation_level="read_committed",
    )
    assigned = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(assigned)
    ends = consumer.end_offsets(assigned)
    remaining = {tp for tp in assigned if ends[tp] > 0}
    count, first, last = 0, 0.0, 0.0
    while remaining:
        for partition, records in consumer.poll(timeout_ms=500, max_records=2000).items():
            if not records:
                continue
            now = time.time()
            first = first or now
            last = now
            count += len(records)
            if records[-1].offset + 1 >= ends[partition]:
                remaining.discard(partition)
    consumer.close()
    return {"count": count, "first": first, "last": last}


def measure_freshness(
    base_env: Mapping[str, str],
    work_dir: Path,
    topic: Topic,
    consumers: int,
    catalog: RealCatalog,
    seed: int,
    rate: float,
    seconds: float,
    client: redis.Redis,
) -> dict[str, float]:
    """Produces at ``rate`` events/s for ``seconds`` while the service runs; freshness per event."""
    namespace = base_env["BUNDLEWISE_NAMESPACE"]
    env = {**base_env, "BUNDLEWISE_EVENTS_TOPIC": topic.name, "BUNDLEWISE_CONSUMER_GROUP": f"{topic.name}-ingestion"}
    keys = topic.watermark_keys(namespace)
    count = int(rate * seconds)
    records = list(generate(catalog, count, seed, "f"))
    watcher = WatermarkWatcher(client, keys)
    producer = bench_producer(bootstrap=base_env["BUNDLEWISE_KAFKA_BOOTSTRAP"])
    sends: list[tuple[float, Any]] = []
    with ingestion_processes(env, work_dir / "freshness", consumers):
        watcher.start()
        try:
            warm_up(producer, topic, watcher)
            # This process holds every record and send: a full collection here would stall the watcher.
            gc.collect()
            gc.freeze()
            started = time.perf_counter()
            for index, (key, value) in enumerate(records):
                due = started + index / rate
                delay = due - time.perf_counter()
                if delay > 0.002:
                    time.sleep(delay)
                sends.append((time.perf_counter(), producer.send(topic.name, key=key, value=value)))
            producer.flush(timeout=60)
            positions = [(sent_at, future.get(timeout=60)) for sent_at, future in sends]
            last_offsets: dict[int, int] = {}
            for _, meta in positions:
                last_offsets[meta.partition] = max(last_offsets.get(meta.partition, -1), meta.offset)
            deadline = time.monotonic() + 120
            while not all(watcher.latest(p) >= o for p, o in last_offsets.items()):
                if time.monotonic() > deadline:
                    raise RuntimeError("the fixed-rate events were not all applied within 2 minutes")
                time.sleep(0.05)
        finally:
            gc.unfreeze()
            watcher.stop()
            producer.close()
    delays = sorted(watcher.visible_at(meta.partition, meta.offset) - sent_at for sent_at, meta in positions)
    return {
        "events": len(delays),
        "freshness_p50_s": delays[len(delays) // 2],
        "freshness_p99_s": delays[min(len(delays) - 1, int(len(delays) * 0.99))],
        "freshness_max_s": delays[-1],
    }


def warm_up(producer: KafkaProducer, topic: Topic, watcher: WatermarkWatcher) -> None:
    """Waits until every partition has an assigned consumer that applies what arrives, so that the
    fixed-rate run measures ingestion, not the consumer group forming: one search event (no
    features) per partition, by a shopper of its own, sent to that partition."""
    sent = {}
    for partition in range(topic.partitions):
        warm = {
            "type": "search",
            "event_id": f"warm-up-{uuid.uuid4().hex}",
            "catalog_id": "amazon",
            "user_id": f"bench-warm-up-{partition}",
            "event_time": datetime.now(UTC).isoformat(),
            "query": "warm up",
        }
        key, value = encoded(warm)
        sent[partition] = producer.send(topic.name, key=key, value=value, partition=partition)
    offsets = {partition: future.get(timeout=60).offset for partition, future in sent.items()}
    deadline = time.monotonic() + 120
    while not all(watcher.latest(p) >= o for p, o in offsets.items()):
        if time.monotonic() > deadline:
            raise RuntimeError("the ingestion group did not start applying every partition within 2 minutes")
        time.sleep(0.05)


class WatermarkWatcher:
    """Polls the partitions' watermarks every 10 ms and remembers when each one moved."""

    def __init__(self, client: redis.Redis, keys: list[str]) -> None:
        self._client = client
        self._keys = keys
        self._history: list[tuple[list[float], list[int]]] = [([], []) for _ in keys]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watermarks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopping.is_set():
            now = time.perf_counter()
            for (times, marks), value in zip(self._history, self._client.mget(self._keys), strict=True):
                mark = -1 if value is None else int(value)
                if not marks or mark > marks[-1]:
                    times.append(now)
                    marks.append(mark)
            time.sleep(WATERMARK_POLL_S)

    def latest(self, partition: int) -> int:
        marks = self._history[partition][1]
        return marks[-1] if marks else -1

    def visible_at(self, partition: int, offset: int) -> float:
        """When a poll first showed ``offset`` of ``partition`` applied."""
        times, marks = self._history[partition]
        return times[bisect.bisect_left(marks, offset)]


def check_consistency(engine: Engine, client: redis.Redis, namespace: str) -> tuple[bool, float]:
    """Whether Redis equals a rebuild from PostgreSQL, key for key; and the rebuild's seconds."""
    live = dump_namespace(client, namespace)
    started = time.perf_counter()
    rebuild_redis(engine, client, namespace)
    seconds = time.perf_counter() - started
    rebuilt = dump_namespace(client, namespace)
    if live != rebuilt:
        differing = sorted(k for k in live.keys() | rebuilt.keys() if live.get(k) != rebuilt.get(k))
        print(f"[bench] {len(differing)} keys differ after a rebuild, e.g. {differing[:5]}", file=sys.stderr)
    return live == rebuilt, seconds


# --- bookkeeping ----------------------------------------------------------------------------------


def kafka_crc32c() -> str:
    """Whether kafka-python checks record CRCs with the C ``crc32c`` package or its pure-Python code."""
    from kafka.record import util  # noqa: PLC0415 - only to report which implementation it picked

    return "python" if util._crc32c is util.crc32c_py else "C (crc32c package)"


def cleanup(engine: Engine, client: redis.Redis, namespace: str, bootstrap: str, topics: list[str]) -> None:
    drop_namespace_keys(client, namespace)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE'))
    engine.dispose()
    client.close()
    if topics:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="bundlewise-bench")
        try:
            admin.delete_topics(topics)
            groups = {f"{topic}-ingestion" for topic in topics}
            with contextlib.suppress(KafkaError):  # best effort: an empty group also expires by itself
                admin.delete_groups([g["group_id"] for g in admin.list_groups() if g["group_id"] in groups])
        finally:
            admin.close()


def markdown(results: Mapping[str, Any]) -> str:
    """This benchmark's section of docs/benchmarks.md."""
    details, run = results["details"], results["run"]
    goal = results["goals"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    rows = [
        ("events_per_s", f"{results['events_per_s']:,}", f"≥ {goal['events_per_s']:,}",
         verdict(results["events_per_s"] >= goal["events_per_s"])),
        ("raw_consume_per_s", f"{results['raw_consume_per_s']:,}", "", ""),
        ("ratio", f"{results['ratio']:.3f}", f"≥ {goal['ratio']}", verdict(results["ratio"] >= goal["ratio"])),
        ("freshness_p50_s", f"{results['freshness_p50_s']:.3f}", "", ""),
        ("freshness_p99_s", f"{results['freshness_p99_s']:.3f}", f"< {goal['freshness_p99_s']}",
         verdict(results["freshness_p99_s"] < goal["freshness_p99_s"])),
        ("consistent", str(results["consistent"]).lower(), "true", verdict(bool(results["consistent"]))),
    ]  # fmt: skip
    table = "\n".join(f"| `{name}` | {value} | {target} | {state} |" for name, value, target, state in rows)
    machine = run["machine"]
    dirty = " (with uncommitted changes)" if run["dirty"] else ""
    return "\n".join(
        [
            "## Ingestion (`benchmarks/ingestion.py`)",
            "",
            "Kafka -> ingestion service -> PostgreSQL and Redis, with Kafka, PostgreSQL and Redis on the same",
            f"machine: {details['events']:,} generated events (`benchmarks/event_generator.py`, "
            f"seed {details['seed']}) "
            f"on {details['partitions']} partitions, {details['consumers']} consumer processes for the service and "
            f"for the bare consumers alike; freshness at a fixed {details['freshness_rate_per_s']:,} events/s (half "
            f"the measured rate), {details['freshness_events']:,} events. kafka-python checks CRC-32C in "
            f"{details.get('kafka_crc32c', 'python')} code.",
            "",
            "| figure | measured | goal | |",
            "|---|---|---|---|",
            table,
            "",
            f"{machine['cpu_model']}, {machine['cores']} cores shared with other work (load average "
            f"{', '.join(map(str, machine['load_average_at_end']))} at the end); commit `{run['commit'][:12]}`{dirty}, "
            f"{run['date']}; `{run['command']}`; ingestion {details['ingestion_s']} s, "
            f"rebuild {details['rebuild_s']} s. "
            "Figures in `benchmarks/results/ingestion.json`.",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
