"""API keys and rate limits on the real gateway process, PostgreSQL and Redis.

The gateway here runs alone (no ranker): its bundles answers come from the popular-bundles fallback,
which is enough to tell an admitted request (200) from a refused one (401, 403, 429).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from scripts.local_stack import LocalStack
from services.gateway.metrics import GatewayMetrics
from services.gateway.rate_limiter import RedisRateLimiter
from shared.store import tables
from shared.store.api_keys import Scope, revoke_key
from tests.integration.isolated_pipeline import CATALOG, IsolatedPipeline, isolated_pipeline
from tests.integration.servers import REDIS_URL
from tests.integration.waiting import wait_for

PROBLEM = "application/problem+json"
KEY_CACHE_S = 1


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IsolatedPipeline]:
    with isolated_pipeline(
        "gwaccess",
        tmp_path_factory.mktemp("gateway-access-logs"),
        ("gateway",),
        {"BUNDLEWISE_API_KEY_CACHE_S": str(KEY_CACHE_S)},
    ) as isolated:
        yield isolated


def bundles(gateway_url: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(
        f"{gateway_url}/v1/users/shopper-1/bundles", params={"catalog_id": CATALOG}, headers=headers, timeout=10
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_key_issued_for_a_scope_opens_that_scope_and_no_other(pipeline: IsolatedPipeline) -> None:
    reader = pipeline.stack.issue_api_key("storefront-reader", (Scope.RECOMMENDATIONS_READ,))
    url = pipeline.stack.gateway_url

    assert bundles(url, {}).status_code == 401
    assert bundles(url, bearer("bwk_000000000000_not-a-key")).status_code == 401
    assert bundles(url, bearer(reader)).status_code == 200
    assert bundles(url, {"X-API-Key": reader}).status_code == 200
    refused = httpx.post(f"{url}/v1/events", json={"events": []}, headers=bearer(reader), timeout=10)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == PROBLEM
    assert "lacks the scope events:write" in refused.json()["detail"]


def test_the_table_holds_no_plaintext_key(pipeline: IsolatedPipeline) -> None:
    key = pipeline.stack.issue_api_key("audited", (Scope.EVENTS_WRITE,))

    with pipeline.engine.connect() as conn:
        rows = conn.execute(select(tables.api_keys)).mappings().all()

    stored = " ".join(str(value) for row in rows for value in row.values())
    secret = key.split("_", 2)[2]  # bwk_<hex id>_<secret>; the secret is base64url and may hold "_"
    assert secret not in stored
    assert key not in stored
    assert len({row["key_hash"] for row in rows}) == len(rows)


def test_a_revoked_key_is_refused_within_the_key_cache_time(pipeline: IsolatedPipeline) -> None:
    key = pipeline.stack.issue_api_key("soon-revoked", (Scope.RECOMMENDATIONS_READ,))
    url = pipeline.stack.gateway_url
    assert bundles(url, bearer(key)).status_code == 200

    assert revoke_key(pipeline.engine, key.split("_")[1]) is True

    wait_for(lambda: bundles(url, bearer(key)).status_code, lambda status: status == 401, 10 * KEY_CACHE_S, "401")


def test_over_its_burst_a_key_gets_429_with_retry_after_and_a_problem(pipeline: IsolatedPipeline) -> None:
    # One token back every 100 s: the burst is all this test can spend.
    key = pipeline.stack.issue_api_key("tight", (Scope.RECOMMENDATIONS_READ,), rate_per_s=0.01, burst=3)
    url = pipeline.stack.gateway_url

    statuses = [bundles(url, bearer(key)).status_code for _ in range(3)]
    refused = bundles(url, bearer(key))

    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM
    assert 1 <= int(refused.headers["retry-after"]) <= 100
    assert "over its rate limit of 0.01 requests/s (bursts of 3)" in refused.json()["detail"]


def test_the_bucket_of_a_key_is_shared_by_every_gateway_process(pipeline: IsolatedPipeline, tmp_path: Path) -> None:
    key = pipeline.stack.issue_api_key("two-replicas", (Scope.RECOMMENDATIONS_READ,), rate_per_s=0.01, burst=4)
    other = LocalStack.with_free_ports(pipeline.stack.base_env, tmp_path)
    other.pepper = pipeline.stack.pepper  # one deployment: the same pepper on every replica
    try:
        other.start(("gateway",))
        first, second = pipeline.stack.gateway_url, other.gateway_url

        statuses = [bundles(url, bearer(key)).status_code for url in (first, second, first, second, second)]
    finally:
        other.stop()

    assert statuses == [200, 200, 200, 200, 429]


def test_when_redis_cannot_be_reached_requests_pass_and_are_counted() -> None:
    metrics = GatewayMetrics(CollectorRegistry())

    async def take_twice() -> list[bool]:
        limiter = RedisRateLimiter("redis://127.0.0.1:1/0", "gwaccess", metrics, timeout_s=0.2)
        try:
            return [(await limiter.take("k1", 1.0, 1)).allowed for _ in range(2)]
        finally:
            await limiter.close()

    assert asyncio.run(take_twice()) == [True, True]
    assert metrics.registry.get_sample_value("bundlewise_gateway_rate_limit_unavailable_total") == 2


def test_the_token_bucket_refuses_past_its_burst_and_says_when_a_token_is_back(pipeline: IsolatedPipeline) -> None:
    metrics = GatewayMetrics(CollectorRegistry())

    async def take(times: int) -> list[tuple[bool, float]]:
        limiter = RedisRateLimiter(REDIS_URL, pipeline.namespace, metrics, timeout_s=1.0)
        try:
            decisions = [await limiter.take(f"bucket-{pipeline.run_id}", 0.5, 2) for _ in range(times)]
        finally:
            await limiter.close()
        return [(d.allowed, d.retry_after_s) for d in decisions]

    decisions = asyncio.run(take(3))

    assert [allowed for allowed, _ in decisions] == [True, True, False]
    assert 0 < decisions[2][1] <= 2.0  # one token every 2 s, none left
    assert metrics.registry.get_sample_value("bundlewise_gateway_rate_limit_unavailable_total") == 0
