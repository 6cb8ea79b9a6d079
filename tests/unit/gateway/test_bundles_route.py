"""GET /v1/users/{user_id}/bundles: parameters, the mapping of the answer, and ranker failures."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from fastapi.testclient import TestClient

from services.gateway.domain import BundleConstraints
from shared.errors import NotFound, Unavailable
from tests.unit.gateway.gateway_fakes import ScriptedBundleSource

PROBLEM = "application/problem+json"
URL = "/v1/users/shopper-42/bundles"


def test_the_bundles_of_the_ranker_are_returned_with_every_field(
    client: TestClient, bundle_source: ScriptedBundleSource
) -> None:
    response = client.get(
        URL,
        params={"catalog_id": "amazon", "k": 2, "anchor_item_id": ["tent-2p", "mat"], "request_id": "req-1"},
    )

    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-1"
    answer = response.json()
    assert answer.pop("impression_id").startswith("imp-")
    assert answer == {
        "user_id": "shopper-42",
        "catalog_id": "amazon",
        "bundles": [
            {
                "bundle_id": "b-1",
                "name": "Camping starter",
                "items": [
                    {
                        "item_id": "tent-2p",
                        "title": "Two-person tent",
                        "price": 129.5,
                        "image_url": "https://img/tent.jpg",
                    },
                    {"item_id": "stove", "title": "Gas stove", "price": None, "image_url": None},
                ],
                "score": 0.93,
                "total_price": None,
                "discounted_price": None,
                "explanation": "often bought with Two-person tent",
                "source": "catalog",
                "propensity": 0.61,
                "shadow_propensity": None,
                "policy_features": [1.0, 0.8, 0.1, 1.0, 0.0, 0.0],
            },
            {
                "bundle_id": "b-2",
                "name": "Coffee corner",
                "items": [{"item_id": "grinder", "title": "Grinder", "price": 40.0, "image_url": None}],
                "score": 0.5,
                "total_price": 40.0,
                "discounted_price": 36.0,
                "explanation": "popular this week",
                "source": "generated",
                "propensity": 0.2,
                "shadow_propensity": None,
                "policy_features": None,
            },
        ],
        "model_version": "m-7",
        "policy_version": "p-3",
        "cold_start": False,
        "request_id": "req-1",
        "fallback": None,
        "shadow_policy": None,
    }
    assert bundle_source.calls == [
        {
            "catalog_id": "amazon",
            "user_id": "shopper-42",
            "k": 2,
            "anchor_item_ids": ["tent-2p", "mat"],
            "request_id": "req-1",
            "constraints": BundleConstraints(),
        }
    ]


def test_an_answer_scored_in_shadow_carries_the_candidate_and_its_propensity_per_bundle(
    client: TestClient, bundle_source: ScriptedBundleSource
) -> None:
    served = bundle_source.recommendation
    bundle_source.recommendation = dataclasses.replace(
        served,
        bundles=tuple(
            dataclasses.replace(b, shadow_propensity=p) for b, p in zip(served.bundles, (0.7, 0.0), strict=True)
        ),
        shadow_policy="ctr-heavy:v3",
    )

    answer = client.get(URL, params={"catalog_id": "amazon", "k": 2}).json()

    assert answer["shadow_policy"] == "ctr-heavy:v3"
    assert [(b["bundle_id"], b["propensity"], b["shadow_propensity"]) for b in answer["bundles"]] == [
        ("b-1", 0.61, 0.7),
        ("b-2", 0.2, 0.0),
    ]


def test_price_and_size_constraints_are_passed_to_the_ranker(
    client: TestClient, bundle_source: ScriptedBundleSource
) -> None:
    reply = client.get(
        "/v1/users/shopper-42/bundles",
        params={"catalog_id": "amazon", "max_total_price": 25.5, "min_items": 2, "max_items": 4},
    )

    assert reply.status_code == 200
    assert bundle_source.calls[0]["constraints"] == BundleConstraints(25.5, 2, 4)


def test_a_non_positive_price_cap_is_refused(client: TestClient) -> None:
    reply = client.get("/v1/users/shopper-42/bundles", params={"catalog_id": "amazon", "max_total_price": 0})

    assert reply.status_code == 422
    assert "max_total_price" in reply.text


def test_without_a_request_id_a_uuid_is_minted_and_echoed(
    client: TestClient, bundle_source: ScriptedBundleSource
) -> None:
    response = client.get(URL, params={"catalog_id": "amazon"})

    minted = response.headers["x-request-id"]
    assert uuid.UUID(minted).version == 4
    assert response.json()["request_id"] == minted
    assert bundle_source.calls[0]["request_id"] == minted
    assert bundle_source.calls[0]["k"] == 10
    assert bundle_source.calls[0]["anchor_item_ids"] == []


@pytest.mark.parametrize("k", [0, 101])
def test_k_outside_1_to_100_is_a_422_problem(client: TestClient, bundle_source: ScriptedBundleSource, k: int) -> None:
    response = client.get(URL, params={"catalog_id": "amazon", "k": k})

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    bound = "greater than or equal to 1" if k == 0 else "less than or equal to 100"
    assert response.json()["detail"] == f"query.k: Input should be {bound}"
    assert bundle_source.calls == []


def test_more_than_50_anchors_is_a_422_problem(client: TestClient) -> None:
    response = client.get(URL, params={"catalog_id": "amazon", "anchor_item_id": [f"i{n}" for n in range(51)]})

    assert response.status_code == 422
    assert (
        response.json()["detail"] == "query.anchor_item_id: List should have at most 50 items after validation, not 51"
    )


def test_a_user_id_outside_the_entity_id_pattern_is_a_422_problem(client: TestClient) -> None:
    response = client.get("/v1/users/-starts-with-dash/bundles", params={"catalog_id": "amazon"})

    assert response.status_code == 422
    assert response.json()["detail"].startswith("path.user_id: String should match pattern")


def test_a_missing_catalog_id_is_a_422_problem(client: TestClient) -> None:
    response = client.get(URL)

    assert response.status_code == 422
    assert response.json()["detail"] == "query.catalog_id: Field required"


def test_an_unknown_catalog_is_a_404_problem(client: TestClient, bundle_source: ScriptedBundleSource) -> None:
    bundle_source.failure = NotFound("ranker: unknown catalog nope")

    response = client.get(URL, params={"catalog_id": "nope", "request_id": "req-9"})

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["x-request-id"] == "req-9"
    assert response.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "ranker: unknown catalog nope",
    }


def test_an_unavailable_ranker_is_a_503_problem_with_retry_after(
    client: TestClient, bundle_source: ScriptedBundleSource
) -> None:
    bundle_source.failure = Unavailable("ranker did not answer in time")

    response = client.get(URL, params={"catalog_id": "amazon"})

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["retry-after"] == "5"
    assert response.json()["detail"] == "ranker did not answer in time"


def test_an_unexpected_error_is_a_generic_500_problem(client: TestClient, bundle_source: ScriptedBundleSource) -> None:
    bundle_source.failure = KeyError("secret internals")

    response = client.get(URL, params={"catalog_id": "amazon"})

    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "internal error",
    }
