"""Loads the real Amazon catalog into the test namespace through the real loader and Kafka."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import Engine, func, select

from scripts.local_stack import REPO_ROOT, LocalStack
from services.featurestore.real_catalogs import load_amazon
from shared.datasets import default_data_dir
from shared.store import tables
from tests.integration.waiting import wait_for


def count_events(engine: Engine, catalog_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(tables.events).where(tables.events.c.catalog_id == catalog_id)
            ).scalar_one()
        )


def load_catalogs_into(stack: LocalStack, engine: Engine, catalogs: str, events: bool = True) -> None:
    env = {**os.environ, **stack.service_env("loader")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "services.featurestore.load_catalogs",
            "--catalogs",
            catalogs,
            *([] if events else ["--no-events"]),
        ],
        cwd=REPO_ROOT,
        env=env,
        check=True,
    )
    if events and "amazon" in catalogs:
        expected = len(load_amazon(default_data_dir()).events)
        try:
            wait_for(lambda: count_events(engine, "amazon"), lambda n: n >= expected, 180, "the Amazon history")
        except AssertionError as exc:  # say what the ingestion service was doing
            raise AssertionError(f"{exc}\ningestion log:\n{stack.processes['ingestion'].log_tail(60)}") from None
