"""``DELETE /v1/users/{user_id}``: deletion through the eraser port, and 501 when none is configured."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient

from services.gateway.ports import UserErasure
from services.gateway.privacy_store import StoreUserEraser
from services.gateway.settings import GatewaySettings
from services.gateway.wiring import user_data_eraser
from shared.errors import Unavailable
from tests.unit.gateway.gateway_fakes import (
    TWO_BUNDLES,
    RecordingPublisher,
    ScriptedBundleSource,
    make_gateway,
    make_settings,
)


@dataclass
class RecordingEraser:
    erasure: UserErasure = field(default_factory=lambda: UserErasure(7, True, 4, 12))
    failure: Exception | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def delete_user(self, *, catalog_id: str, user_id: str) -> UserErasure:
        self.calls.append((catalog_id, user_id))
        if self.failure is not None:
            raise self.failure
        return self.erasure

    async def close(self) -> None:
        pass


@pytest.fixture
def eraser() -> RecordingEraser:
    return RecordingEraser()


@pytest.fixture
def privacy_client(eraser: RecordingEraser) -> Iterator[TestClient]:
    gateway = make_gateway(RecordingPublisher(), ScriptedBundleSource(recommendation=TWO_BUNDLES))
    gateway.app.state.privacy = eraser
    headers = {"Authorization": f"Bearer {gateway.keys.add(['catalog:admin'])}"}
    with TestClient(gateway.app, raise_server_exceptions=False, headers=headers) as test_client:
        yield test_client


def test_deleting_a_user_answers_what_was_deleted(privacy_client: TestClient, eraser: RecordingEraser) -> None:
    response = privacy_client.delete("/v1/users/shopper-42", params={"catalog_id": "amazon"})

    assert response.status_code == 200
    assert response.json() == {
        "catalog_id": "amazon",
        "events_deleted": 7,
        "user_row_deleted": True,
        "redis_keys_deleted": 4,
        "aggregates_corrected": 12,
        "denylisted": True,
    }
    assert eraser.calls == [("amazon", "shopper-42")]


def test_deletion_without_a_catalog_is_refused_before_anything_is_deleted(
    privacy_client: TestClient, eraser: RecordingEraser
) -> None:
    response = privacy_client.delete("/v1/users/shopper-42")

    assert response.status_code == 422
    assert "query.catalog_id: Field required" in response.json()["detail"]
    assert eraser.calls == []


def test_deletion_answers_503_with_retry_after_when_the_store_is_down(
    privacy_client: TestClient, eraser: RecordingEraser
) -> None:
    eraser.failure = Unavailable("the feature store's PostgreSQL is unavailable; nothing was deleted")

    response = privacy_client.delete("/v1/users/shopper-42", params={"catalog_id": "amazon"})

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json()["detail"] == "the feature store's PostgreSQL is unavailable; nothing was deleted"


def test_deletion_answers_501_naming_the_settings_when_the_gateway_has_no_store(client: TestClient) -> None:
    response = client.delete("/v1/users/shopper-42", params={"catalog_id": "amazon"})

    assert response.status_code == 501
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    assert "BUNDLEWISE_POSTGRES_URL" in detail
    assert "BUNDLEWISE_REDIS_URL" in detail


def test_the_wiring_builds_an_eraser_only_when_both_store_urls_are_set() -> None:
    postgres, redis_url = "postgresql+psycopg://u:p@127.0.0.1:1/db", "redis://127.0.0.1:1/0"

    assert user_data_eraser(make_settings(postgres_url=None, redis_url=None)) is None
    assert user_data_eraser(make_settings(postgres_url=postgres, redis_url=None)) is None
    eraser = user_data_eraser(make_settings(postgres_url=postgres, redis_url=redis_url))
    assert isinstance(eraser, StoreUserEraser)
    asyncio.run(eraser.close())  # it connected to nothing


def test_the_store_urls_are_optional_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POSTGRES_URL", "REDIS_URL", "NAMESPACE"):
        monkeypatch.delenv(f"BUNDLEWISE_{name}", raising=False)

    settings = GatewaySettings(kafka_bootstrap="127.0.0.1:9", ranker_addr="127.0.0.1:9")

    assert (settings.postgres_url, settings.redis_url, settings.namespace) == (None, None, "live")
