"""``bundlewise rebuild``: recomputes a namespace's Redis features from PostgreSQL.

For when Redis was lost or a feature definition changed. It drops every Redis key of the namespace,
mirrors the catalogs again and re-applies every stored event in Kafka order
(:func:`shared.store.rebuild.rebuild_redis`). Ingestion for that namespace must be stopped meanwhile:
events it applies during the rebuild are lost or counted twice.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import redis

from shared.log import configure_logging
from shared.settings import PostgresSettings, RedisSettings, SettingsError, load_settings
from shared.store.migrate import make_engine
from shared.store.rebuild import rebuild_redis


class RebuildSettings(PostgresSettings, RedisSettings):
    pass


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bundlewise rebuild", description=__doc__)
    parser.add_argument("--namespace", help="default: $BUNDLEWISE_NAMESPACE")
    parser.add_argument(
        "--yes", action="store_true", help="ingestion for the namespace is stopped: drop its Redis keys and rebuild"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(RebuildSettings)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging("rebuild", "WARNING")
    namespace = args.namespace or settings.namespace
    warning = (
        f"rebuild drops every Redis key of namespace {namespace!r} and recomputes it from PostgreSQL. "
        f"Stop ingestion for {namespace!r} first (events it applies meanwhile are lost or counted twice); "
        "serving answers from partial features until it finishes."
    )
    print(f"warning: {warning}", file=sys.stderr)
    if not args.yes:
        print("rerun with --yes once ingestion is stopped", file=sys.stderr)
        return 1
    engine = make_engine(settings.postgres_url, namespace)
    client = redis.Redis.from_url(settings.redis_url)
    started = time.perf_counter()
    try:
        report = rebuild_redis(engine, client, namespace)
    finally:
        engine.dispose()
        client.close()
    elapsed = time.perf_counter() - started
    print(
        f"rebuilt namespace {namespace}: {report.deleted_keys} keys dropped, {report.catalogs} catalogs mirrored, "
        f"{report.events} events re-applied in {elapsed:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
