"""The real Redis of the vector-cache tests (``BUNDLEWISE_REDIS_URL``, default 127.0.0.1:6379) and their namespaces."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

REDIS_URL = os.environ.get("BUNDLEWISE_REDIS_URL", "redis://127.0.0.1:6379/0")
CACHE_TTL_S = 600


@contextmanager
def throwaway_namespace(client: redis.Redis) -> Iterator[str]:
    """A namespace no other test or process uses; its keys are deleted afterwards (never a flush)."""
    name = f"test_emb_{uuid.uuid4().hex[:12]}"
    yield name
    keys = list(client.scan_iter(match=f"{name}:*", count=100_000))
    if keys:
        client.delete(*keys)
