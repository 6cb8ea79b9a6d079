"""Where the real servers of `make up` answer (overridable with the usual settings)."""

from __future__ import annotations

import os

POSTGRES_URL = os.environ.get(
    "BUNDLEWISE_POSTGRES_URL", "postgresql+psycopg://bundlewise:bundlewise@127.0.0.1:5432/bundlewise"
)
REDIS_URL = os.environ.get("BUNDLEWISE_REDIS_URL", "redis://127.0.0.1:6379/0")
KAFKA = os.environ.get("BUNDLEWISE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
