"""Alembic environment: migrates one namespace (PostgreSQL schema) per run."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

config = context.config
namespace = config.attributes.get("namespace", "live")
url = config.get_main_option("sqlalchemy.url")
if url is None:
    raise RuntimeError("sqlalchemy.url is not set; run migrations through shared.store.migrate")

engine = create_engine(url)
with engine.connect() as connection:
    # The advisory lock lets several services start at once without racing on the same migration.
    connection.execute(text("SELECT pg_advisory_lock(hashtext('bundlewise-migrations'))"))
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{namespace}"'))
    connection.execute(text(f'SET search_path TO "{namespace}"'))
    connection.commit()
    context.configure(connection=connection, version_table_schema=namespace, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
    connection.execute(text("SELECT pg_advisory_unlock(hashtext('bundlewise-migrations'))"))
    connection.commit()
engine.dispose()
