"""Schema changes through Alembic, run programmatically (``bundlewise migrate`` or at start-up).

A namespace is a PostgreSQL schema: each gets its own tables and its own ``alembic_version`` row, so a
replay can be migrated into an isolated copy of the layout.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine

from shared.log import configure_logging
from shared.settings import PostgresSettings, load_settings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(postgres_url: str, namespace: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", postgres_url.replace("%", "%%"))
    config.attributes["namespace"] = namespace
    return config


def upgrade_to_head(postgres_url: str, namespace: str = "live") -> None:
    """Creates ``namespace`` if needed and applies every pending migration to it. Idempotent."""
    command.upgrade(alembic_config(postgres_url, namespace), "head")


def make_engine(postgres_url: str, namespace: str = "live", pool_size: int = 5) -> Engine:
    """An engine whose connections see ``namespace``'s tables (search_path) and nothing else."""
    return create_engine(
        postgres_url,
        pool_size=pool_size,
        pool_pre_ping=True,
        connect_args={"options": f"-csearch_path={namespace}", "connect_timeout": 5},
    )


def main() -> None:
    """``python -m shared.store.migrate``: migrates BUNDLEWISE_NAMESPACE of BUNDLEWISE_POSTGRES_URL."""
    settings = load_settings(PostgresSettings)
    configure_logging("migrate")
    upgrade_to_head(settings.postgres_url, settings.namespace)


if __name__ == "__main__":
    main()
