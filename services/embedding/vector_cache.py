"""The vector cache: vectors stored under (model version, content hash), so no input is encoded twice.

The port is :class:`VectorCache`; :class:`RedisVectorCache` is its adapter. The cache only ever
saves work: a read or write that fails counts as a miss (and in a metric), never as an error.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

import redis

log = logging.getLogger(__name__)

# Bump when the key or value layout changes: old entries then simply stop being found.
KEY_LAYOUT = "v1"


def content_key(model_version: str, role: str, text: str) -> str:
    """``<model version>:<sha256 hex of role, NUL, text>``: equal exactly for equal inputs of one model.

    The NUL separator keeps ``("query", "x")`` and ``("quer", "yx")`` apart.
    """
    digest = hashlib.sha256(f"{role}\0{text}".encode()).hexdigest()
    return f"{model_version}:{digest}"


class VectorCache(Protocol):
    """Raw vectors (float32 bytes) by content key."""

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The stored value of each key, None where absent, in the order of ``keys``.

        Raises:
            CacheUnavailable: the store did not answer.
        """
        ...

    def put_many(self, values: Mapping[str, bytes]) -> None:
        """Stores every value under its key (with the store's expiry).

        Raises:
            CacheUnavailable: the store did not answer.
        """
        ...

    def close(self) -> None:
        """Releases connections."""
        ...


class CacheUnavailable(RuntimeError):
    """The cache store failed or timed out; callers treat it as a miss."""


class RedisVectorCache:
    """Vectors as plain Redis strings under ``<namespace>:embedding:<layout>:<content key>``, with a TTL.

    Reads are one MGET and writes one pipeline of SET EX per call; sockets time out quickly, so a
    slow Redis costs a call at most ``timeout_s`` per operation before it is encoded anyway.
    """

    def __init__(self, client: redis.Redis, namespace: str, ttl_s: int) -> None:
        """Uses ``client`` (thread-safe: it holds a connection pool); ``close`` closes it."""
        self._client = client
        self._prefix = f"{namespace}:embedding:{KEY_LAYOUT}:"
        self._ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, namespace: str, ttl_s: int, timeout_s: float = 0.25) -> RedisVectorCache:
        """Connects lazily (on the first call) to the Redis at ``url``."""
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        return cls(client, namespace, ttl_s)

    @property
    def key_prefix(self) -> str:
        """What every key this cache writes starts with."""
        return self._prefix

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        try:
            values = self._client.mget([self._prefix + key for key in keys])
        except redis.RedisError as exc:
            raise CacheUnavailable(f"vector cache read failed: {exc}") from exc
        # A client made without decode_responses returns bytes.
        return [value if isinstance(value, bytes) or value is None else value.encode() for value in values]

    def put_many(self, values: Mapping[str, bytes]) -> None:
        if not values:
            return
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for key, value in values.items():
                    pipe.set(self._prefix + key, value, ex=self._ttl_s)
                pipe.execute()
        except redis.RedisError as exc:
            raise CacheUnavailable(f"vector cache write failed: {exc}") from exc

    def close(self) -> None:
        self._client.close()
