"""``python -m benchmarks.serving``: the storefront's view of speed, on the full serving path.

A namespace of its own gets the real Amazon catalog and its history (through the same
``FeatureWriter`` ingestion uses), then the services run as processes (gateway -> ranker ->
featurestore, with the policy service) on the real Redis and PostgreSQL. A closed-loop load
generator asks for 10 bundles for real shoppers at 1, 8 and 32 concurrent clients, each level for a
fixed time; a bare FastAPI endpoint that returns a constant, served by uvicorn with the same worker
count, is measured in the same run with the same generator, so ``ratio`` compares like with like.

Auth and rate limits stay on when the gateway has them: the generator sends the stack's API key.
A non-200 answer (a 429 included) counts as an error; a fallback answer counts as a fallback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import redis
from sqlalchemy import Engine, create_engine, text

from benchmarks.provenance import REPO_ROOT, run_metadata
from scripts.local_stack import LocalStack, free_port
from services.featurestore.real_catalogs import RealCatalog, load_amazon
from shared.datasets import default_data_dir
from shared.events import Event
from shared.settings import KafkaSettings, PostgresSettings, RedisSettings
from shared.store.catalog import CatalogWriter
from shared.store.feature_updates import DeliveredEvent, FeatureWriter
from shared.store.migrate import make_engine, upgrade_to_head
from shared.store.rebuild import drop_namespace_keys

RESULTS_FILE = REPO_ROOT / "benchmarks" / "results" / "serving.json"
# The serving path; ingestion and embedding take no part in answering.
SERVICES = ("featurestore", "policy", "ranker", "gateway")
LEVELS = (1, 8, 32)
K = 10
HISTORY_CHUNK = 2000


class BenchSettings(PostgresSettings, RedisSettings, KafkaSettings):
    """Where the servers are: the usual ``BUNDLEWISE_*`` variables (config/local.env)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per concurrency level")
    parser.add_argument("--warmup-seconds", type=float, default=2.0, help="unmeasured time before each level")
    parser.add_argument("--users", type=int, default=2000, help="distinct shoppers asked for (those with history)")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = BenchSettings()  # type: ignore[call-arg]
    namespace = f"bench_serving_{uuid.uuid4().hex[:6]}"
    catalog = load_amazon(default_data_dir())
    users = shoppers_with_history(catalog.events, args.users)
    engine = make_engine(settings.postgres_url, namespace)
    client = redis.Redis.from_url(settings.redis_url)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        upgrade_to_head(settings.postgres_url, namespace)
        started = time.perf_counter()
        load_catalog_and_history(engine, client, namespace, catalog)
        print(
            f"[bench] {catalog.catalog_id}: catalog and {len(catalog.events)} events in "
            f"{time.perf_counter() - started:.1f}s",
            file=sys.stderr,
        )
        env = {
            "BUNDLEWISE_POSTGRES_URL": settings.postgres_url,
            "BUNDLEWISE_REDIS_URL": settings.redis_url,
            "BUNDLEWISE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "BUNDLEWISE_NAMESPACE": namespace,
            "BUNDLEWISE_LOG_LEVEL": "WARNING",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        stack = LocalStack.with_free_ports(env, log_dir)
        try:
            stack.start(SERVICES)
            headers = auth_headers(stack)
            paths = [bundles_path(catalog.catalog_id, user) for user in users]
            meter = CpuMeter({name: stack.processes[name].process.pid for name in ("gateway", "ranker")}, client)
            full = asyncio.run(measure_levels("127.0.0.1", stack.ports["gateway"], paths, headers, args, meter))
        finally:
            stack.stop()
        with bare_endpoint() as (port, pid):
            bare = asyncio.run(measure_levels("127.0.0.1", port, ["/constant"], {}, args, CpuMeter({"bare": pid})))
    finally:
        cleanup(settings.postgres_url, engine, client, namespace)
    results = summarise(full, bare, users)
    results.update(run_metadata("benchmarks.serving", argv))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"[bench] logs in {log_dir}", file=sys.stderr)
    return 0


def shoppers_with_history(events: Sequence[Event], count: int) -> list[str]:
    """The ``count`` shoppers with the most events (a storefront's returning customers), stable order."""
    per_user = Counter(e.user_id for e in events)
    return [user for user, _ in sorted(per_user.items(), key=lambda kv: (-kv[1], kv[0]))[:count]]


def load_catalog_and_history(engine: Engine, client: redis.Redis, namespace: str, catalog: RealCatalog) -> None:
    """The catalog, then its history applied by the ingestion's own writer (one partition, in order)."""
    writer = CatalogWriter(engine, client, namespace)
    writer.upsert_catalog(catalog.catalog_id, catalog.name, catalog.source, catalog.currency)
    writer.upsert_items(catalog.catalog_id, catalog.items)
    writer.upsert_bundles(catalog.catalog_id, catalog.bundles)
    features = FeatureWriter(engine, client, namespace)
    ordered = sorted(catalog.events, key=lambda e: e.event_time)
    for start in range(0, len(ordered), HISTORY_CHUNK):
        chunk = ordered[start : start + HISTORY_CHUNK]
        features.apply([DeliveredEvent("bench-serving", 0, start + n, e) for n, e in enumerate(chunk)])


def auth_headers(stack: LocalStack) -> dict[str, str]:
    """The stack's API key, when the gateway checks keys."""
    key = getattr(stack, "api_key", None)
    return {"Authorization": f"Bearer {key}"} if key else {}


def bundles_path(catalog_id: str, user_id: str) -> str:
    return f"/v1/users/{user_id}/bundles?" + urlencode({"catalog_id": catalog_id, "k": K})


# --- the load generator: HTTP/1.1 keep-alive over asyncio streams, cheap enough to share the cores ---


@dataclass
class Level:
    concurrency: int
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    fallbacks: int = 0
    seconds: float = 0.0
    answers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds each process spent during the level (see :class:`CpuMeter`)."""


class CpuMeter:
    """CPU seconds (user + system) used so far by each process on the path: the services by their pid
    (Linux ``/proc``), Redis by its own INFO, and this process (the load generator). Where the time of
    a request goes, and so what the ratio to the bare endpoint is made of."""

    def __init__(self, pids: Mapping[str, int], redis_client: redis.Redis | None = None) -> None:
        self._pids = dict(pids)
        self._redis = redis_client

    def read(self) -> dict[str, float]:
        used = {name: process_cpu_s(pid) for name, pid in self._pids.items()}
        if self._redis is not None:
            info = self._redis.info("cpu")
            used["redis"] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        own = os.times()
        used["load_generator"] = own.user + own.system
        return used


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure_levels(
    host: str,
    port: int,
    paths: Sequence[str],
    headers: Mapping[str, str],
    args: argparse.Namespace,
    cpu: CpuMeter,
) -> list[Level]:
    levels = []
    for concurrency in LEVELS:
        await run_level(host, port, paths, headers, concurrency, args.warmup_seconds, Level(concurrency))
        level = Level(concurrency)
        before = cpu.read()
        await run_level(host, port, paths, headers, concurrency, args.seconds, level)
        level.cpu_s = {name: used - before[name] for name, used in cpu.read().items()}
        levels.append(level)
        print(
            f"[bench] :{port} c={concurrency}: {len(level.latencies_s) / level.seconds:.0f} req/s, "
            f"p50 {np.percentile(level.latencies_s, 50) * 1000:.2f} ms, errors {level.errors}",
            file=sys.stderr,
        )
    return levels


async def run_level(
    host: str,
    port: int,
    paths: Sequence[str],
    headers: Mapping[str, str],
    concurrency: int,
    seconds: float,
    level: Level,
) -> None:
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    counter = iter(range(10**12))

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        try:
            while time.perf_counter() < deadline:
                path = paths[next(counter) % len(paths)]
                request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()
                sent = time.perf_counter()
                writer.write(request)
                status, body = await read_response(reader)
                level.latencies_s.append(time.perf_counter() - sent)
                level.statuses[status] += 1
                record_answer(level, path, status, body)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    level.seconds = time.perf_counter() - started


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return status, await reader.readexactly(length)


def record_answer(level: Level, path: str, status: int, body: bytes) -> None:
    if status != 200:
        level.errors += 1
        return
    if not path.startswith("/v1/users/"):
        return
    answer = json.loads(body)
    if answer.get("fallback"):
        level.fallbacks += 1
    user = path.split("/")[3]
    level.answers.setdefault(user, tuple(b["bundle_id"] for b in answer["bundles"]))


# --- the bare endpoint ----------------------------------------------------------------------------

BARE_APP = """
from fastapi import FastAPI
app = FastAPI()
@app.get("/constant")
async def constant() -> dict[str, str]:
    return {"bundles": "none"}
"""


@contextmanager
def bare_endpoint() -> Iterator[tuple[int, int]]:
    """A FastAPI app returning a constant, under uvicorn with one worker (as the gateway runs); yields
    its port and pid."""
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="bench-bare-"))
    (folder / "bare_app.py").write_text(BARE_APP)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(folder)},
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                asyncio.run(asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1))
                break
            except OSError:
                time.sleep(0.2)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(10)


# --- results --------------------------------------------------------------------------------------


def summarise(full: list[Level], bare: list[Level], users: Sequence[str]) -> dict[str, Any]:
    def describe(level: Level) -> dict[str, Any]:
        latencies = np.array(level.latencies_s) * 1000
        return {
            "concurrency": level.concurrency,
            "requests": len(level.latencies_s),
            "rps": round(len(level.latencies_s) / level.seconds, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2),
            "errors": level.errors,
            "fallbacks": level.fallbacks,
            "statuses": {str(s): n for s, n in sorted(level.statuses.items())},
            "cpu_ms_per_request": {
                name: round(1000 * used / max(len(level.latencies_s), 1), 3) for name, used in level.cpu_s.items()
            },
        }

    levels = {f"c{level.concurrency}": describe(level) for level in full}
    bare_levels = {f"c{level.concurrency}": describe(level) for level in bare}
    answers: dict[str, tuple[str, ...]] = {}
    for level in full:
        for user, bundles in level.answers.items():
            answers.setdefault(user, bundles)
    most_common = Counter(answers.values()).most_common(1)
    distinct = (
        sum(1 for bundles in answers.values() if bundles != most_common[0][0]) / len(answers) if most_common else 0.0
    )
    return {
        "p50_ms_c1": levels["c1"]["p50_ms"],
        "p99_ms_c1": levels["c1"]["p99_ms"],
        "rps_c32": levels["c32"]["rps"],
        "p99_ms_c32": levels["c32"]["p99_ms"],
        "bare_rps_c32": bare_levels["c32"]["rps"],
        "ratio": round(levels["c32"]["rps"] / bare_levels["c32"]["rps"], 3),
        "cpu_ms_per_request_c32": levels["c32"]["cpu_ms_per_request"],
        "bare_cpu_ms_per_request_c32": bare_levels["c32"]["cpu_ms_per_request"],
        "errors": sum(level["errors"] for level in levels.values()),
        "fallbacks": sum(level["fallbacks"] for level in levels.values()),
        "distinct_answers": round(distinct, 3),
        "users_asked": len(users),
        "users_answered": len(answers),
        "k": K,
        "levels": levels,
        "bare_levels": bare_levels,
    }


def cleanup(postgres_url: str, engine: Engine, client: redis.Redis, namespace: str) -> None:
    engine.dispose()
    with create_engine(postgres_url).begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE'))
    drop_namespace_keys(client, namespace)
    client.close()


def markdown(results: Mapping[str, Any]) -> str:
    rows = "\n".join(
        f"| {name} | {level['rps']} | {level['p50_ms']} | {level['p99_ms']} | {level['errors']} | "
        f"{level['fallbacks']} | {results['bare_levels'][name]['rps']} | {results['bare_levels'][name]['p99_ms']} |"
        for name, level in results["levels"].items()
    )
    return f"""## Serving: 10 bundles for a shopper, gateway -> ranker -> featurestore

| clients | req/s | p50 ms | p99 ms | errors | fallbacks | bare req/s | bare p99 ms |
|---|---|---|---|---|---|---|---|
{rows}

{cpu_paragraph(results)}
ratio (req/s at 32 clients over the bare endpoint's): **{results["ratio"]}**; distinct answers:
**{results["distinct_answers"]}** of {results["users_answered"]} shoppers. Goal: p50 under 5 ms and p99 under
15 ms for one client, ratio at least 0.3, no errors or fallbacks, distinct answers at least 0.5.
Commit `{results["commit"][:10]}`, {results["date"]}, {results["machine"]["cpu_model"]} ×
{results["machine"]["cores"]}; `{results["command"]}`.
"""


def cpu_paragraph(results: Mapping[str, Any]) -> str:
    """Where the CPU of a request goes, full path and bare; empty for results measured before it was."""
    if "cpu_ms_per_request_c32" not in results:
        return ""
    return (
        f"CPU per request at 32 clients, in ms: {cpu_line(results['cpu_ms_per_request_c32'])}; the bare "
        f"endpoint: {cpu_line(results['bare_cpu_ms_per_request_c32'])}. With every process on the same two "
        "cores, the ratio is close to the bare request's total CPU over the full path's.\n"
    )


def cpu_line(per_process: Mapping[str, float]) -> str:
    total = sum(per_process.values())
    return ", ".join(f"{name} {ms:.2f}" for name, ms in per_process.items()) + f" (total {total:.2f})"


if __name__ == "__main__":
    sys.exit(main())
