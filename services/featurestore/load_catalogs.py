"""``bundlewise load-catalogs``: loads the real catalogs into PostgreSQL (mirrored to Redis) and
replays their shoppers' history as events through Kafka, where ingestion picks them up.

Loading twice changes nothing: catalog rows are upserts and the events keep their ids.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import redis

from services.featurestore.real_catalogs import CATALOG_IDS, load_real_catalogs
from shared.datasets import DatasetError, default_data_dir
from shared.kafka import make_producer, send_events
from shared.log import configure_logging
from shared.settings import KafkaSettings, PostgresSettings, RedisSettings, SettingsError, load_settings
from shared.store.catalog import CatalogWriter
from shared.store.migrate import make_engine, upgrade_to_head


class LoaderSettings(PostgresSettings, RedisSettings, KafkaSettings):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bundlewise load-catalogs", description=__doc__)
    parser.add_argument(
        "--catalogs",
        default=",".join(CATALOG_IDS),
        help=f"comma-separated, from {', '.join(CATALOG_IDS)} (default: all)",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="default: $BUNDLEWISE_DATA_DIR or ../shared/data")
    parser.add_argument("--no-events", action="store_true", help="load the catalogs only; replay no history")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    catalog_ids = tuple(c.strip() for c in args.catalogs.split(",") if c.strip())
    unknown = sorted(set(catalog_ids) - set(CATALOG_IDS))
    if unknown:
        print(f"unknown catalog(s) {unknown}; choose from {list(CATALOG_IDS)}", file=sys.stderr)
        return 2
    try:
        settings = load_settings(LoaderSettings)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging("load-catalogs")
    data_dir = args.data_dir or default_data_dir()
    upgrade_to_head(settings.postgres_url, settings.namespace)
    writer = CatalogWriter(
        make_engine(settings.postgres_url, settings.namespace),
        redis.Redis.from_url(settings.redis_url),
        settings.namespace,
    )
    producer = None if args.no_events else make_producer(settings.kafka_bootstrap, "bundlewise-loader", linger_ms=20)
    try:
        for catalog in load_real_catalogs(data_dir, catalog_ids):
            started = time.perf_counter()
            writer.upsert_catalog(catalog.catalog_id, catalog.name, catalog.source, catalog.currency)
            writer.upsert_items(catalog.catalog_id, catalog.items)
            writer.upsert_bundles(catalog.catalog_id, catalog.bundles)
            sent = 0
            if producer is not None and catalog.events:
                sent = send_events(producer, settings.events_topic, catalog.events)
            print(
                f"{catalog.catalog_id:8} {len(catalog.items):6} items {len(catalog.bundles):5} bundles "
                f"{sent:7} events sent to {settings.events_topic}  ({time.perf_counter() - started:.1f}s)",
                flush=True,
            )
    except DatasetError as exc:
        print(f"cannot read the datasets: {exc}", file=sys.stderr)
        return 1
    finally:
        if producer is not None:
            producer.close(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
