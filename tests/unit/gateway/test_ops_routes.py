"""Liveness, readiness, /metrics and the OpenAPI document."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shared.errors import Unavailable
from tests.unit.gateway.gateway_fakes import (
    TWO_BUNDLES,
    RecordingPublisher,
    ScriptedBundleSource,
    make_gateway,
    view_event,
)


def test_healthz_answers_while_the_process_lives(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


def test_readyz_is_200_when_the_ranker_serves(client: TestClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_readyz_is_503_when_the_ranker_does_not_serve(client: TestClient, bundle_source: ScriptedBundleSource) -> None:
    bundle_source.ready_failure = Unavailable("ranker is NOT_SERVING")

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["detail"] == "ranker is NOT_SERVING"


def test_metrics_label_requests_by_route_template_never_the_raw_path(client: TestClient) -> None:
    client.get("/v1/users/shopper-42/bundles", params={"catalog_id": "amazon"})
    client.get("/v1/users/shopper-43/bundles", params={"catalog_id": "amazon", "k": 0})
    client.get("/no/such/path")

    exposition = client.get("/metrics").text

    assert (
        'bundlewise_gateway_http_requests_total{method="GET",route="/v1/users/{user_id}/bundles",status="200"} 1.0'
        in exposition
    )
    assert (
        'bundlewise_gateway_http_requests_total{method="GET",route="/v1/users/{user_id}/bundles",status="422"} 1.0'
        in exposition
    )
    assert 'bundlewise_gateway_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in exposition
    assert (
        'bundlewise_gateway_http_request_duration_seconds_count{method="GET",route="/v1/users/{user_id}/bundles"} 2.0'
        in exposition
    )
    assert "shopper-4" not in exposition
    assert "/no/such/path" not in exposition


def test_metrics_count_published_events_by_type_and_rejected_events(client: TestClient) -> None:
    bad = view_event(4)
    del bad["item_id"]
    events = [view_event(1), view_event(2), view_event(3, type="purchase"), bad]
    client.post("/v1/events", json={"events": events})

    exposition = client.get("/metrics").text

    assert 'bundlewise_gateway_events_published_total{type="view"} 2.0' in exposition
    assert 'bundlewise_gateway_events_published_total{type="purchase"} 1.0' in exposition
    assert "bundlewise_gateway_events_rejected_total 1.0" in exposition


def test_openapi_lists_the_events_and_bundles_routes_with_the_event_schemas(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    assert document["info"]["title"] == "Bundlewise gateway"
    assert set(document["paths"]["/v1/events"]) == {"post"}
    assert set(document["paths"]["/v1/users/{user_id}/bundles"]) == {"get"}
    assert document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EventsBatch"
    }
    schemas = document["components"]["schemas"]
    assert schemas["EventsBatch"]["properties"]["events"]["maxItems"] == 5
    assert {"ItemEvent", "ReviewEvent", "SearchEvent", "BundleImpressionEvent", "BundleOutcomeEvent"} <= set(schemas)
    assert {"BundlesResponse", "EventsResponse", "Problem"} <= set(schemas)


def test_openapi_references_resolve_to_declared_schemas(client: TestClient) -> None:
    text = client.get("/openapi.json").text
    document = client.get("/openapi.json").json()

    referenced = {part.split('"')[0] for part in text.split('"$ref":"#/components/schemas/')[1:]}

    assert referenced <= set(document["components"]["schemas"])


def test_two_apps_in_one_process_keep_separate_metrics() -> None:
    first = make_gateway(RecordingPublisher(), ScriptedBundleSource(recommendation=TWO_BUNDLES)).app
    second = make_gateway(RecordingPublisher(), ScriptedBundleSource(recommendation=TWO_BUNDLES)).app
    with TestClient(first) as first_client, TestClient(second) as second_client:
        first_client.get("/healthz")

        assert 'route="/healthz"' in first_client.get("/metrics").text
        assert 'route="/healthz"' not in second_client.get("/metrics").text
