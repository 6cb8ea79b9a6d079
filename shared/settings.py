"""Settings read from the environment once at start-up and passed down explicitly.

Every variable is prefixed ``BUNDLEWISE_``. A service declares one settings class that mixes in the
pieces it needs; :func:`load_settings` turns pydantic's validation report into one message that
names each variable to set, so a misconfigured process stops before it connects to anything.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "BUNDLEWISE_"


class SettingsError(RuntimeError):
    """A required setting is missing or has an unusable value."""


class BaseServiceSettings(BaseSettings):
    """What every process has: its log level and where it exports Prometheus metrics."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    metrics_port: int = Field(ge=0, le=65535, description="HTTP port of /metrics; 0 picks a free port.")


class PostgresSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    postgres_url: str = Field(
        pattern=r"^postgresql(\+psycopg)?://",
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pass@127.0.0.1:5432/bundlewise",
    )
    # A namespace is a PostgreSQL schema and a Redis key prefix: replays run in their own.
    namespace: str = Field(default="live", pattern="^[a-z][a-z0-9_]{0,30}$")


class RedisSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    redis_url: str = Field(pattern=r"^rediss?://", description="e.g. redis://127.0.0.1:6379/0")


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(min_length=1, description="host:port[,host:port...]")
    events_topic: str = "bundlewise.events.v1"
    deadletter_topic: str = "bundlewise.events.deadletter.v1"
    events_partitions: int = Field(default=6, ge=1, le=1024)


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(settings_class: type[SettingsT]) -> SettingsT:
    """Reads ``settings_class`` from the environment.

    Raises:
        SettingsError: naming every ``BUNDLEWISE_*`` variable that is missing or invalid.
    """
    try:
        return settings_class()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            variable = ENV_PREFIX + field.upper()
            if error["type"] == "missing":
                problems.append(f"{variable} is not set")
            else:
                problems.append(f"{variable} is invalid: {error['msg']}")
        hint = "config/local.env lists every setting with its local value"
        raise SettingsError(f"{settings_class.__name__}: {'; '.join(problems)} ({hint})") from None
