"""Who may call a ``/v1`` route, and how often: API keys with scopes, then a rate limit per key.

:class:`ApiKeyVerifier` keeps what PostgreSQL said about a key (valid, revoked or unknown) for
``api_key_cache_s``, keyed by the key's HMAC, so a request costs no database round trip once its key
was seen; a revocation therefore takes effect on every gateway within that time. :class:`AccessControl`
is what a route's dependency calls: 401 without a valid key, 403 without the route's scope, 429 when
the key's token bucket is empty.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from services.gateway.errors import PermissionDenied, RateLimited, Unauthenticated
from services.gateway.metrics import GatewayMetrics
from services.gateway.ports import KeyStore, RateLimiter
from shared.store.api_keys import StoredKey, key_digest

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
MAX_KEY_LENGTH = 256
# Unknown keys are cached too (an attacker's guesses must not each cost a query), within this bound.
MAX_CACHED_KEYS = 10_000

MISSING_KEY = (
    "this route needs an API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`; "
    "an operator creates one with `bin/bundlewise api-key create --name <who> --scope <scope>`"
)
INVALID_KEY = (
    "the API key is not valid (unknown, revoked, or from another deployment): ask the operator for a "
    "current key (`bin/bundlewise api-key list` shows which exist)"
)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key of ``Authorization: Bearer <key>``, else of ``X-API-Key``; None when neither is sent."""
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    key = headers.get(API_KEY_HEADER.lower(), "").strip()
    return key or None


class ApiKeyVerifier:
    """Checks presented keys against the :class:`~services.gateway.ports.KeyStore`, with a cache.

    Concurrent requests with the same uncached key share one lookup.
    """

    def __init__(
        self,
        store: KeyStore,
        pepper: str,
        *,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_CACHED_KEYS,
    ) -> None:
        self._store = store
        self._pepper = pepper
        self._cache_s = cache_s
        self._clock = clock
        self._max_entries = max_entries
        self._cache: OrderedDict[str, tuple[StoredKey | None, float]] = OrderedDict()
        self._lookups: dict[str, asyncio.Future[StoredKey | None]] = {}

    async def verify(self, presented: str) -> StoredKey:
        """The valid key ``presented`` is.

        Raises:
            Unauthenticated: unknown or revoked.
            shared.errors.Unavailable: the key is not cached and the store cannot be asked.
        """
        if len(presented) > MAX_KEY_LENGTH:
            raise Unauthenticated(INVALID_KEY)
        digest = key_digest(self._pepper, presented)
        key = await self._lookup(digest)
        if key is None or key.revoked:
            raise Unauthenticated(INVALID_KEY)
        return key

    async def _lookup(self, digest: str) -> StoredKey | None:
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        pending = self._lookups.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        lookup = asyncio.ensure_future(self._store.find(digest))
        self._lookups[digest] = lookup
        try:
            key = await asyncio.shield(lookup)
        finally:
            del self._lookups[digest]
        self._remember(digest, key)
        return key

    def _remember(self, digest: str, key: StoredKey | None) -> None:
        self._cache[digest] = (key, self._clock() + self._cache_s)
        self._cache.move_to_end(digest)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``rate_per_s`` tokens come back each second, up to ``burst``."""

    rate_per_s: float
    burst: int


class AccessControl:
    """Admits a request to a route that needs ``scope``, or raises the problem to answer.

    ``verifier`` None turns authentication and rate limits off (``BUNDLEWISE_AUTH_ENABLED=false``);
    ``limiter`` None turns only rate limits off.
    """

    def __init__(
        self,
        verifier: ApiKeyVerifier | None,
        limiter: RateLimiter | None,
        default_limit: RateLimit,
        metrics: GatewayMetrics,
    ) -> None:
        self._verifier = verifier
        self._limiter = limiter
        self._default_limit = default_limit
        self._metrics = metrics

    @property
    def enabled(self) -> bool:
        return self._verifier is not None

    async def admit(self, headers: Mapping[str, str], scope: str, route: str) -> StoredKey | None:
        """The caller's key (None with auth off).

        Raises:
            Unauthenticated: no key, or not a valid one (401).
            PermissionDenied: the key lacks ``scope`` (403).
            RateLimited: the key's bucket is empty (429).
            shared.errors.Unavailable: the key could not be verified now (503).
        """
        if self._verifier is None:
            return None
        presented = presented_key(headers)
        if presented is None:
            self._metrics.auth_refusals.labels(reason="missing_key").inc()
            raise Unauthenticated(MISSING_KEY)
        try:
            key = await self._verifier.verify(presented)
        except Unauthenticated:
            self._metrics.auth_refusals.labels(reason="invalid_key").inc()
            raise
        if scope not in key.scopes:
            self._metrics.auth_refusals.labels(reason="missing_scope").inc()
            held = ", ".join(sorted(key.scopes))
            raise PermissionDenied(
                f"this API key ({key.key_id}) lacks the scope {scope} that {route} needs (it has {held}): "
                f"ask the operator for a key created with --scope {scope}"
            )
        if self._limiter is not None:
            limit = RateLimit(key.rate_per_s or self._default_limit.rate_per_s, key.burst or self._default_limit.burst)
            decision = await self._limiter.take(key.key_id, limit.rate_per_s, limit.burst)
            if not decision.allowed:
                self._metrics.rate_limited.inc()
                raise RateLimited(
                    f"this API key ({key.key_id}) is over its rate limit of {limit.rate_per_s:g} requests/s "
                    f"(bursts of {limit.burst}): retry after Retry-After seconds, or ask for a higher limit",
                    decision.retry_after_s,
                )
        return key
