"""GET /v1/bundles/search: parameters, the mapping of the answer, and the ranker's refusals."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.gateway.domain import BundleItem, BundleSearchResult, RankedBundle
from services.gateway.errors import SearchNotConfigured, SearchNotReady
from shared.errors import NotFound
from shared.store.api_keys import Scope
from tests.unit.gateway.gateway_fakes import GatewayUnderTest

PROBLEM = "application/problem+json"
URL = "/v1/bundles/search"

CAMERA_KIT = BundleSearchResult(
    bundles=(
        RankedBundle(
            bundle_id="electronic-b7",
            name="camera kit",
            items=(
                BundleItem(item_id="cam", title="Mirrorless camera", price=499.0, image_url="https://img/c.jpg"),
                BundleItem(item_id="sd", title="SD card 64 GB", price=None, image_url=None),
            ),
            score=0.87,
            total_price=None,
            discounted_price=450.0,
            explanation="Matches your search “camera kit”",
            source="catalog",
            propensity=1.0,
        ),
    ),
    model_version="multilingual-e5-small@abc",
)


@dataclass
class ScriptedSearch:
    result: BundleSearchResult = CAMERA_KIT
    failure: Exception | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def search_bundles(self, *, catalog_id: str, query: str, k: int) -> BundleSearchResult:
        self.calls.append({"catalog_id": catalog_id, "query": query, "k": k})
        if self.failure is not None:
            raise self.failure
        return self.result


@pytest.fixture
def search() -> ScriptedSearch:
    return ScriptedSearch()


@pytest.fixture
def searching(gateway: GatewayUnderTest, search: ScriptedSearch) -> Iterator[TestClient]:
    gateway.app.state.gateway = dataclasses.replace(gateway.app.state.gateway, search=search)
    key = gateway.keys.add((Scope.RECOMMENDATIONS_READ,))
    with TestClient(gateway.app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


def test_the_found_bundles_are_returned_with_their_items_score_and_explanation(
    searching: TestClient, search: ScriptedSearch
) -> None:
    response = searching.get(URL, params={"q": "  camera kit ", "catalog_id": "amazon", "k": 3})

    assert response.status_code == 200
    assert response.json() == {
        "catalog_id": "amazon",
        "query": "camera kit",
        "bundles": [
            {
                "bundle_id": "electronic-b7",
                "name": "camera kit",
                "items": [
                    {"item_id": "cam", "title": "Mirrorless camera", "price": 499.0, "image_url": "https://img/c.jpg"},
                    {"item_id": "sd", "title": "SD card 64 GB", "price": None, "image_url": None},
                ],
                "score": 0.87,
                "total_price": None,
                "discounted_price": 450.0,
                "explanation": "Matches your search “camera kit”",
            }
        ],
        "model_version": "multilingual-e5-small@abc",
    }
    assert search.calls == [{"catalog_id": "amazon", "query": "camera kit", "k": 3}]


def test_a_chinese_query_is_passed_on_as_typed(searching: TestClient, search: ScriptedSearch) -> None:
    response = searching.get(URL, params={"q": "相机套装", "catalog_id": "amazon"})

    assert response.status_code == 200
    assert search.calls == [{"catalog_id": "amazon", "query": "相机套装", "k": 10}]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"q": "   ", "catalog_id": "amazon"}, "query.q"),
        ({"q": "", "catalog_id": "amazon"}, "query.q"),
        ({"q": "x" * 201, "catalog_id": "amazon"}, "query.q"),
        ({"q": "camera\nkit", "catalog_id": "amazon"}, "query.q"),
        ({"catalog_id": "amazon"}, "query.q"),
        ({"q": "camera kit"}, "query.catalog_id"),
        ({"q": "camera kit", "catalog_id": "amazon", "k": 0}, "query.k"),
        ({"q": "camera kit", "catalog_id": "amazon", "k": 51}, "query.k"),
    ],
)
def test_an_invalid_parameter_is_a_422_problem_naming_it(
    searching: TestClient, search: ScriptedSearch, params: dict[str, Any], named: str
) -> None:
    response = searching.get(URL, params=params)

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"].startswith(named)
    assert search.calls == []


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (NotFound("ranker: catalog 'nowhere' has no live bundles"), 404),
        (SearchNotReady("ranker: catalog 'amazon' has no bundle vectors yet"), 503),
        (SearchNotConfigured("ranker: bundle search needs an embedding service"), 501),
    ],
)
def test_the_rankers_refusal_is_a_problem_with_its_reason(
    searching: TestClient, search: ScriptedSearch, failure: Exception, status: int
) -> None:
    search.failure = failure

    response = searching.get(URL, params={"q": "camera kit", "catalog_id": "amazon"})

    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"] == str(failure)


def test_a_gateway_without_a_search_source_answers_501(client: TestClient) -> None:
    response = client.get(URL, params={"q": "camera kit", "catalog_id": "amazon"})

    assert response.status_code == 501
    assert response.headers["content-type"] == PROBLEM


def test_a_key_without_recommendations_read_is_refused(gateway: GatewayUnderTest, search: ScriptedSearch) -> None:
    gateway.app.state.gateway = dataclasses.replace(gateway.app.state.gateway, search=search)
    key = gateway.keys.add((Scope.EVENTS_WRITE,))
    with TestClient(gateway.app, raise_server_exceptions=False) as client:
        response = client.get(
            URL, params={"q": "camera kit", "catalog_id": "amazon"}, headers={"Authorization": f"Bearer {key}"}
        )

    assert response.status_code == 403
    assert "recommendations:read" in response.json()["detail"]
    assert search.calls == []
