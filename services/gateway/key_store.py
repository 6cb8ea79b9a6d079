"""The :class:`~services.gateway.ports.KeyStore` over PostgreSQL (``shared.store.api_keys``)."""

from __future__ import annotations

import asyncio

import sqlalchemy.exc

from shared.errors import Unavailable
from shared.store.api_keys import StoredKey, find_key
from shared.store.migrate import make_engine


class PostgresKeyStore:
    """Looks keys up in the namespace's ``api_keys`` table, in a worker thread (blocking I/O).

    Nothing connects on construction; the first lookup does.
    """

    def __init__(self, postgres_url: str, namespace: str) -> None:
        self._engine = make_engine(postgres_url, namespace, pool_size=2)

    async def find(self, digest: str) -> StoredKey | None:
        try:
            return await asyncio.to_thread(find_key, self._engine, digest)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
            raise Unavailable("API keys cannot be verified now (their database is unavailable); retry later") from exc

    async def close(self) -> None:
        self._engine.dispose()
