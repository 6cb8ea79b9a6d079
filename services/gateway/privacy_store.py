"""The :class:`~services.gateway.ports.UserDataEraser` over the feature store's PostgreSQL and Redis."""

from __future__ import annotations

import asyncio

import redis
import sqlalchemy.exc

from services.gateway.ports import UserErasure
from shared.errors import Unavailable
from shared.store.migrate import make_engine
from shared.store.privacy import delete_user


class StoreUserEraser:
    """Runs :func:`shared.store.privacy.delete_user` in a worker thread (it is blocking I/O).

    Nothing connects on construction; the first deletion does.
    """

    def __init__(self, postgres_url: str, redis_url: str, namespace: str) -> None:
        self._engine = make_engine(postgres_url, namespace, pool_size=2)
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=10)
        self._namespace = namespace

    async def delete_user(self, *, catalog_id: str, user_id: str) -> UserErasure:
        try:
            report = await asyncio.to_thread(
                delete_user, self._engine, self._redis, self._namespace, catalog_id, user_id
            )
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
            raise Unavailable("the feature store's PostgreSQL is unavailable; nothing was deleted") from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise Unavailable("the feature store's Redis is unavailable; retry the deletion") from exc
        return UserErasure(
            events_deleted=report.events_deleted,
            user_row_deleted=report.user_row_deleted,
            keys_deleted=report.keys_deleted,
            aggregates_corrected=report.aggregates_adjusted,
        )

    async def close(self) -> None:
        self._engine.dispose()
        self._redis.close()
