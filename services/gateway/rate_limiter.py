"""Per-key rate limits as Redis token buckets, shared by every gateway worker and replica.

One Lua script reads, refills and spends a bucket atomically, with Redis's own clock (``TIME``), so
gateways with skewed clocks agree. A bucket is a hash ``{tokens, ts}`` that expires once it would be
full again, so idle keys cost no memory.

When Redis cannot be reached the request is **allowed** (fail open), counted in
``bundlewise_gateway_rate_limit_unavailable_total`` and logged at most every ``LOG_EVERY_S``: a
recommender's answers are cheap to give and costly to withhold from a storefront, and the limit
protects capacity rather than money; keys are still checked. After a failure the limiter does not
ask Redis again for ``RETRY_AFTER_FAILURE_S``, so a Redis that hangs costs one timeout per second,
not one per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis.asyncio
import redis.exceptions

from services.gateway.metrics import GatewayMetrics
from services.gateway.ports import RateDecision
from shared.store.redis_keys import rate_limit_bucket

log = logging.getLogger(__name__)

LOG_EVERY_S = 10.0
RETRY_AFTER_FAILURE_S = 1.0

# KEYS[1] the bucket; ARGV: rate per second, burst. Returns {allowed (0/1), seconds until a token, as text}.
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil or last == nil then
  tokens = burst
  last = now
end
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, string.format('%.6f', wait)}
"""


class RedisRateLimiter:
    """:class:`~services.gateway.ports.RateLimiter` over Redis; see the module for the failure mode."""

    def __init__(
        self,
        redis_url: str,
        namespace: str,
        metrics: GatewayMetrics,
        *,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis.asyncio.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
        self._script = self._redis.register_script(TOKEN_BUCKET)
        self._namespace = namespace
        self._metrics = metrics
        self._clock = clock
        self._skip_until = 0.0
        self._last_log = -LOG_EVERY_S

    async def take(self, key_id: str, rate_per_s: float, burst: int) -> RateDecision:
        if self._clock() < self._skip_until:
            return self._fail_open(None)
        try:
            allowed, wait = await self._script(
                keys=[rate_limit_bucket(self._namespace, key_id)], args=[rate_per_s, burst]
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            self._skip_until = self._clock() + RETRY_AFTER_FAILURE_S
            return self._fail_open(exc)
        return RateDecision(allowed=int(allowed) == 1, retry_after_s=float(wait))

    def _fail_open(self, error: BaseException | None) -> RateDecision:
        self._metrics.rate_limit_unavailable.inc()
        now = self._clock()
        if error is not None and now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log.warning(
                "rate limits are not enforced: Redis is unavailable (%s: %s); requests pass unlimited "
                "until it answers (bundlewise_gateway_rate_limit_unavailable_total counts them)",
                type(error).__name__,
                error,
            )
        return RateDecision(allowed=True)

    async def close(self) -> None:
        await self._redis.aclose()
