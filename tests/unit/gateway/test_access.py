"""API keys and scopes on every /v1 route, the key cache and its revocation bound, rate limits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.gateway.access import presented_key
from shared.errors import Unavailable
from shared.store.api_keys import Scope
from tests.unit.gateway.gateway_fakes import (
    TWO_BUNDLES,
    GatewayUnderTest,
    RecordingPublisher,
    ScriptedBundleSource,
    ScriptedLimiter,
    make_gateway,
    make_settings,
)

PROBLEM = "application/problem+json"
BUNDLES = "/v1/users/shopper-42/bundles?catalog_id=amazon"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_v1_route_without_a_key_is_a_401_problem_saying_how_to_send_one(anonymous: TestClient) -> None:
    response = anonymous.get(BUNDLES)

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == 'Bearer realm="bundlewise"'
    assert "Authorization: Bearer <key>" in response.json()["detail"]
    assert "bin/bundlewise api-key create" in response.json()["detail"]


def test_every_v1_route_of_the_openapi_document_refuses_a_request_without_a_key(anonymous: TestClient) -> None:
    document = anonymous.get("/openapi.json").json()
    operations = [
        (method, path) for path, methods in document["paths"].items() if path.startswith("/v1/") for method in methods
    ]

    statuses = {
        (method, path): anonymous.request(method, path.replace("{", "x").replace("}", "")).status_code
        for method, path in operations
    }

    assert len(operations) >= 9
    assert set(statuses.values()) == {401}
    assert all(document["paths"][p][m]["security"] for m, p in operations)


@pytest.mark.parametrize("path", ["/v1/events", "/v1/feedback", "/v1/catalogs/amazon/items"])
def test_the_key_is_checked_before_the_body_is_read(anonymous: TestClient, path: str) -> None:
    response = anonymous.post(path, content=b"{not json", headers={"content-type": "application/json"})

    assert response.status_code == 401


def test_an_admitted_request_spends_one_token(client: TestClient, gateway: GatewayUnderTest) -> None:
    client.post("/v1/feedback", json={})

    assert len(gateway.limiter.calls) == 1


def test_health_readiness_metrics_and_the_documentation_need_no_key(anonymous: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert anonymous.get(path).status_code == 200, path


def test_an_unknown_key_is_a_401_problem(anonymous: TestClient) -> None:
    response = anonymous.get(BUNDLES, headers=bearer("bwk_000000000000_guessed"))

    assert response.status_code == 401
    assert response.json()["detail"].startswith("the API key is not valid")


def test_a_key_is_accepted_as_bearer_token_or_in_x_api_key(gateway: GatewayUnderTest, anonymous: TestClient) -> None:
    key = gateway.keys.add([Scope.RECOMMENDATIONS_READ])

    assert anonymous.get(BUNDLES, headers=bearer(key)).status_code == 200
    assert anonymous.get(BUNDLES, headers={"X-API-Key": key}).status_code == 200


def test_presented_key_prefers_the_bearer_token_and_ignores_other_schemes() -> None:
    assert presented_key({"authorization": "Bearer a-key", "x-api-key": "other"}) == "a-key"
    assert presented_key({"authorization": "Basic dXNlcjpwYXNz", "x-api-key": "other"}) == "other"
    assert presented_key({"authorization": "Bearer   "}) is None
    assert presented_key({}) is None


@pytest.mark.parametrize(
    ("method", "path", "body", "scope"),
    [
        ("GET", BUNDLES, None, Scope.RECOMMENDATIONS_READ),
        ("POST", "/v1/events", {"events": []}, Scope.EVENTS_WRITE),
        ("POST", "/v1/feedback", {}, Scope.EVENTS_WRITE),
        ("PUT", "/v1/catalogs/amazon", {"name": "Amazon"}, Scope.CATALOG_ADMIN),
        ("DELETE", "/v1/catalogs/amazon/items/i1", None, Scope.CATALOG_ADMIN),
        ("DELETE", "/v1/users/shopper-42?catalog_id=amazon", None, Scope.CATALOG_ADMIN),
    ],
)
def test_a_key_without_the_routes_scope_is_a_403_problem_naming_the_scope(
    gateway: GatewayUnderTest, anonymous: TestClient, method: str, path: str, body: object, scope: str
) -> None:
    others = [s for s in (Scope.RECOMMENDATIONS_READ, Scope.EVENTS_WRITE, Scope.CATALOG_ADMIN) if s != scope]
    key = gateway.keys.add(others)

    response = anonymous.request(method, path, json=body, headers=bearer(key))

    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM
    assert f"lacks the scope {scope}" in response.json()["detail"]
    assert f"--scope {scope}" in response.json()["detail"]


def test_a_verified_key_costs_one_lookup_until_the_cache_expires() -> None:
    clock = FakeClock()
    gateway = make_gateway(
        RecordingPublisher(), ScriptedBundleSource(recommendation=TWO_BUNDLES), clock=clock
    )  # api_key_cache_s defaults to 30
    key = gateway.keys.add()
    with TestClient(gateway.app, headers=bearer(key)) as client:
        for _ in range(5):
            assert client.get(BUNDLES).status_code == 200
        assert gateway.keys.lookups == 1

        clock.now += 31
        assert client.get(BUNDLES).status_code == 200
        assert gateway.keys.lookups == 2


def test_a_revoked_key_is_refused_once_the_cache_time_has_passed() -> None:
    clock = FakeClock()
    gateway = make_gateway(
        RecordingPublisher(),
        ScriptedBundleSource(recommendation=TWO_BUNDLES),
        settings=make_settings(api_key_cache_s=10),
        clock=clock,
    )
    key = gateway.keys.add()
    with TestClient(gateway.app, headers=bearer(key), raise_server_exceptions=False) as client:
        assert client.get(BUNDLES).status_code == 200
        gateway.keys.revoke(key)

        clock.now += 9.9
        assert client.get(BUNDLES).status_code == 200  # within the stated bound
        clock.now += 0.2
        assert client.get(BUNDLES).status_code == 401


def test_an_unknown_key_is_cached_too_so_guesses_do_not_each_cost_a_lookup(
    gateway: GatewayUnderTest, anonymous: TestClient
) -> None:
    for _ in range(3):
        assert anonymous.get(BUNDLES, headers=bearer("bwk_0_guess")).status_code == 401

    assert gateway.keys.lookups == 1


def test_a_key_that_cannot_be_verified_because_the_store_is_down_is_a_503(
    gateway: GatewayUnderTest, anonymous: TestClient
) -> None:
    key = gateway.keys.add()
    gateway.keys.failure = Unavailable("API keys cannot be verified now (their database is unavailable); retry later")

    response = anonymous.get(BUNDLES, headers=bearer(key))

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


def test_over_its_rate_limit_a_key_gets_a_429_problem_with_retry_after() -> None:
    limiter = ScriptedLimiter(deny_after=2, retry_after_s=2.2)
    gateway = make_gateway(RecordingPublisher(), ScriptedBundleSource(recommendation=TWO_BUNDLES), limiter=limiter)
    key = gateway.keys.add()
    with TestClient(gateway.app, headers=bearer(key)) as client:
        statuses = [client.get(BUNDLES).status_code for _ in range(3)]
        refused = client.get(BUNDLES)

    assert statuses == [200, 200, 429]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM
    assert refused.headers["retry-after"] == "3"
    assert "over its rate limit of 50 requests/s (bursts of 100)" in refused.json()["detail"]


def test_the_limit_is_the_keys_own_when_it_has_one_else_the_settings(gateway: GatewayUnderTest) -> None:
    own = gateway.keys.add(rate_per_s=5, burst=7)
    default = gateway.keys.add()
    with TestClient(gateway.app) as client:
        client.get(BUNDLES, headers=bearer(own))
        client.get(BUNDLES, headers=bearer(default))

    assert gateway.limiter.calls == [("k0001", 5, 7), ("k0002", 50.0, 100)]


def test_refusals_are_counted_by_reason_and_by_route_template(gateway: GatewayUnderTest, anonymous: TestClient) -> None:
    read_only = gateway.keys.add([Scope.RECOMMENDATIONS_READ])
    anonymous.get(BUNDLES)
    anonymous.get(BUNDLES, headers=bearer("bwk_0_guess"))
    anonymous.post("/v1/events", json={"events": []}, headers=bearer(read_only))

    metrics = anonymous.get("/metrics").text

    assert 'bundlewise_gateway_auth_refusals_total{reason="missing_key"} 1.0' in metrics
    assert 'bundlewise_gateway_auth_refusals_total{reason="invalid_key"} 1.0' in metrics
    assert 'bundlewise_gateway_auth_refusals_total{reason="missing_scope"} 1.0' in metrics
    assert 'route="/v1/users/{user_id}/bundles",status="401"' in metrics
    assert "shopper-42" not in metrics


@pytest.fixture
def open_client() -> Iterator[TestClient]:
    gateway = make_gateway(
        RecordingPublisher(),
        ScriptedBundleSource(recommendation=TWO_BUNDLES),
        settings=make_settings(auth_enabled=False),
    )
    with TestClient(gateway.app) as client:
        yield client


def test_with_auth_turned_off_requests_need_no_key(open_client: TestClient) -> None:
    assert open_client.get(BUNDLES).status_code == 200


def test_settings_with_auth_on_name_what_is_missing() -> None:
    settings = make_settings(postgres_url=None, redis_url="redis://127.0.0.1:6379/0", api_key_pepper=None)

    assert settings.unsafe_configuration() == (
        "API keys are checked (BUNDLEWISE_AUTH_ENABLED is true) but BUNDLEWISE_POSTGRES_URL, "
        "BUNDLEWISE_API_KEY_PEPPER are not set: set them (the pepper is a secret of at least 16 characters, "
        "the same for bin/bundlewise api-key)"
    )
    assert make_settings(auth_enabled=False, postgres_url=None).unsafe_configuration() is None
