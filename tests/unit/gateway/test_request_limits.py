"""Every route with a body refuses one over the limit; CORS is off unless origins are configured."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.unit.gateway.gateway_fakes import (
    TWO_BUNDLES,
    RecordingPublisher,
    ScriptedBundleSource,
    make_gateway,
    make_settings,
)

PROBLEM = "application/problem+json"


def body_routes(client: TestClient) -> list[tuple[str, str]]:
    document = client.get("/openapi.json").json()
    return [
        (method, path.replace("{", "x").replace("}", ""))
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    ]


def test_every_route_with_a_body_refuses_a_declared_body_over_the_limit(client: TestClient) -> None:
    routes = body_routes(client)
    oversized = b"{" + b" " * 20_001 + b"}"

    statuses = {
        (method, path): client.request(method, path, content=oversized, headers={"content-type": "application/json"})
        for method, path in routes
    }

    assert len(routes) >= 5
    assert {route: r.status_code for route, r in statuses.items()} == dict.fromkeys(routes, 413)
    assert {r.headers["content-type"] for r in statuses.values()} == {PROBLEM}


def test_a_streamed_body_over_the_limit_is_refused_without_content_length(client: TestClient) -> None:
    def chunks() -> object:
        for _ in range(30):
            yield b" " * 1000

    response = client.post("/v1/feedback", content=chunks(), headers={"content-type": "application/json"})  # type: ignore[arg-type]

    assert response.status_code == 413
    assert response.json()["detail"] == "the body is larger than 20000 bytes; send less per request (split batches)"


def test_without_configured_origins_no_cors_headers_are_sent(client: TestClient) -> None:
    response = client.options(
        "/v1/users/shopper-42/bundles",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"},
    )

    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(("origin", "allowed"), [("https://shop.example", True), ("https://evil.example", False)])
def test_a_configured_origin_may_call_from_a_browser_and_no_other(origin: str, allowed: bool) -> None:
    settings = make_settings(cors_allowed_origins=["https://shop.example"])
    gateway = make_gateway(RecordingPublisher(), ScriptedBundleSource(recommendation=TWO_BUNDLES), settings=settings)
    with TestClient(gateway.app) as client:
        preflight = client.options(
            "/v1/users/shopper-42/bundles",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Authorization",
            },
        )

    assert (preflight.status_code == 200) is allowed
    assert (preflight.headers.get("access-control-allow-origin") == origin) is allowed
