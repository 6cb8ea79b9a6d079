"""Catalog sync: items and bundles are upserted and retired through the editor port, by admins only."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.errors import NotFound
from shared.store.catalog import CatalogBundle, CatalogItem
from tests.unit.gateway.gateway_fakes import TWO_BUNDLES, RecordingPublisher, ScriptedBundleSource, make_gateway

PROBLEM = "application/problem+json"


@dataclass
class RecordingCatalogEditor:
    """Keeps every write; knows the items and bundles in ``known``; raises ``failure`` when set."""

    known: set[str] = field(default_factory=lambda: {"i1", "b1"})
    failure: Exception | None = None
    writes: list[tuple[str, str, Any]] = field(default_factory=list)

    async def upsert_catalog(self, catalog_id: str, name: str, currency: str | None) -> None:
        self.writes.append(("catalog", catalog_id, (name, currency)))

    async def upsert_items(self, catalog_id: str, items: Sequence[CatalogItem]) -> None:
        if self.failure is not None:
            raise self.failure
        self.writes.append(("items", catalog_id, list(items)))

    async def upsert_bundles(self, catalog_id: str, bundles: Sequence[CatalogBundle]) -> None:
        if self.failure is not None:
            raise self.failure
        self.writes.append(("bundles", catalog_id, list(bundles)))

    async def retire_item(self, catalog_id: str, item_id: str) -> bool:
        self.writes.append(("retire item", catalog_id, item_id))
        return item_id in self.known

    async def retire_bundle(self, catalog_id: str, bundle_id: str) -> bool:
        self.writes.append(("retire bundle", catalog_id, bundle_id))
        return bundle_id in self.known

    async def close(self) -> None:
        pass


@pytest.fixture
def editor() -> RecordingCatalogEditor:
    return RecordingCatalogEditor()


@pytest.fixture
def admin(editor: RecordingCatalogEditor) -> Iterator[TestClient]:
    gateway = make_gateway(RecordingPublisher(), ScriptedBundleSource(recommendation=TWO_BUNDLES), catalog=editor)
    headers = {"Authorization": f"Bearer {gateway.keys.add(['catalog:admin'])}"}
    with TestClient(gateway.app, headers=headers, raise_server_exceptions=False) as client:
        yield client


def test_a_catalog_is_created_with_its_name_and_currency(admin: TestClient, editor: RecordingCatalogEditor) -> None:
    response = admin.put("/v1/catalogs/outdoor", json={"name": "Outdoor shop", "currency": "EUR"})

    assert response.status_code == 200
    assert response.json() == {"catalog_id": "outdoor", "upserted": 1}
    assert editor.writes == [("catalog", "outdoor", ("Outdoor shop", "EUR"))]


def test_items_are_upserted_with_title_price_category_and_image(
    admin: TestClient, editor: RecordingCatalogEditor
) -> None:
    item = {
        "item_id": "tent-2p",
        "title": "Two-person tent",
        "price": 129.5,
        "category_path": ["Outdoor", "Tents"],
        "image_url": "https://img.example/tent.jpg",
    }

    response = admin.post("/v1/catalogs/outdoor/items", json={"items": [item, {"item_id": "mat", "title": "Mat"}]})

    assert response.status_code == 200
    assert response.json() == {"catalog_id": "outdoor", "upserted": 2}
    assert editor.writes == [
        (
            "items",
            "outdoor",
            [
                CatalogItem("tent-2p", "Two-person tent", ("Outdoor", "Tents"), 129.5, "https://img.example/tent.jpg"),
                CatalogItem("mat", "Mat"),
            ],
        )
    ]


def test_bundles_are_upserted_with_their_items_in_order_and_without_repeats(
    admin: TestClient, editor: RecordingCatalogEditor
) -> None:
    bundle = {"bundle_id": "camp", "name": "Camping", "item_ids": ["tent-2p", "mat", "tent-2p"], "price": 150}

    response = admin.post("/v1/catalogs/outdoor/bundles", json={"bundles": [bundle]})

    assert response.status_code == 200
    assert editor.writes == [("bundles", "outdoor", [CatalogBundle("camp", "Camping", ("tent-2p", "mat"), 150.0)])]


def test_writing_to_a_catalog_that_does_not_exist_is_a_404_saying_to_create_it(
    admin: TestClient, editor: RecordingCatalogEditor
) -> None:
    editor.failure = NotFound("catalog nowhere does not exist: create it with PUT /v1/catalogs/nowhere")

    response = admin.post("/v1/catalogs/nowhere/items", json={"items": [{"item_id": "a", "title": "A"}]})

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"] == "catalog nowhere does not exist: create it with PUT /v1/catalogs/nowhere"


@pytest.mark.parametrize("kind", ["items", "bundles"])
def test_retiring_answers_what_was_retired_and_404_for_an_unknown_id(
    admin: TestClient, editor: RecordingCatalogEditor, kind: str
) -> None:
    known = "i1" if kind == "items" else "b1"

    retired = admin.delete(f"/v1/catalogs/outdoor/{kind}/{known}")
    unknown = admin.delete(f"/v1/catalogs/outdoor/{kind}/nothing")

    assert retired.status_code == 200
    assert retired.json() == {"catalog_id": "outdoor", "id": known, "retired": True}
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == f"catalog outdoor has no {kind[:-1]} nothing"


@pytest.mark.parametrize(
    "body",
    [
        {"items": []},
        {"items": [{"item_id": "a", "title": ""}]},
        {"items": [{"item_id": "a", "title": "A", "price": -1}]},
        {"items": [{"item_id": "a", "title": "A", "image_url": "javascript:alert(1)"}]},
        {"items": [{"item_id": "a b", "title": "A"}]},
        {"items": [{"item_id": "a", "title": "A", "colour": "red"}]},
    ],
)
def test_invalid_items_are_a_422_and_nothing_is_written(
    admin: TestClient, editor: RecordingCatalogEditor, body: dict[str, Any]
) -> None:
    response = admin.post("/v1/catalogs/outdoor/items", json=body)

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert editor.writes == []


def test_without_postgres_and_redis_catalog_sync_answers_501_saying_what_to_set() -> None:
    gateway = make_gateway(RecordingPublisher(), ScriptedBundleSource(recommendation=TWO_BUNDLES))
    headers = {"Authorization": f"Bearer {gateway.keys.add(['catalog:admin'])}"}
    with TestClient(gateway.app, headers=headers) as client:
        response = client.put("/v1/catalogs/outdoor", json={"name": "Outdoor"})

    assert response.status_code == 501
    assert "BUNDLEWISE_POSTGRES_URL" in response.json()["detail"]


@pytest.mark.parametrize("name", ["\u0000m", "line\nbreak", "tab\there"])
def test_a_name_with_control_characters_is_a_422_not_a_database_error(admin: TestClient, name: str) -> None:
    response = admin.put("/v1/catalogs/outdoor", json={"name": name})

    assert response.status_code == 422
