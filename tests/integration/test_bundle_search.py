"""Typed bundle search end to end: `bundlewise backfill-vectors` embeds a small catalog's bundles
with the running embedding service (real multilingual-e5 weights), and GET /v1/bundles/search goes
gateway -> ranker -> embedding service and the ranker's index. English and Chinese queries find the
right bundle; retired bundles and bundles holding a retired item are never answered."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import Engine

from scripts.local_stack import REPO_ROOT, LocalStack
from shared.store.catalog import CatalogBundle, CatalogItem, CatalogWriter
from shared.store.redis_keys import NamespaceKeys
from tests.integration.waiting import wait_for

CATALOG = "searchshop"
ITEMS = {
    "tent": ("Two-person dome tent, waterproof", ("Sports & Outdoors", "Camping & Hiking", "Tents")),
    "sleeping-bag": ("Mummy sleeping bag for cold nights", ("Sports & Outdoors", "Camping & Hiking", "Sleeping Bags")),
    "stove": ("Portable gas camping stove", ("Sports & Outdoors", "Camping & Hiking", "Camp Kitchen")),
    "espresso": ("Espresso machine with steam wand", ("Home & Kitchen", "Coffee, Tea & Espresso", "Espresso Machines")),
    "grinder": ("Burr coffee grinder", ("Home & Kitchen", "Coffee, Tea & Espresso", "Coffee Grinders")),
    "frother": ("Electric milk frother", ("Home & Kitchen", "Coffee, Tea & Espresso", "Milk Frothers")),
    "dslr": ("DSLR camera body, 24 megapixels", ("Electronics", "Camera & Photo", "Digital Cameras")),
    "sd-card": ("SD memory card 64 GB", ("Electronics", "Camera & Photo", "Memory Cards")),
    "tripod": ("Aluminium camera tripod", ("Electronics", "Camera & Photo", "Tripods")),
    "mirrorless": ("Mirrorless camera with kit lens", ("Electronics", "Camera & Photo", "Digital Cameras")),
    "camera-bag": ("Camera shoulder bag", ("Electronics", "Camera & Photo", "Bags & Cases")),
    "knife": ("Chef's knife, 8 inch", ("Home & Kitchen", "Kitchen & Dining", "Cutlery")),
    "board": ("Bamboo cutting board", ("Home & Kitchen", "Kitchen & Dining", "Cutting Boards")),
}
# Named after nothing in their items: search must find bundles by their items alone.
BUNDLES = {
    "camping": ("tent", "sleeping-bag", "stove"),
    "coffee": ("espresso", "grinder", "frother"),
    "camera": ("dslr", "sd-card", "tripod"),
    "camera-2": ("mirrorless", "camera-bag"),
    "kitchen": ("knife", "board"),
}


@pytest.fixture(scope="module")
def writer(engine: Engine, redis_client: redis.Redis, namespace: str) -> CatalogWriter:
    writer = CatalogWriter(engine, redis_client, namespace)
    writer.upsert_catalog(CATALOG, "Search test shop", "tests/integration/test_bundle_search.py", "EUR")
    writer.upsert_items(
        CATALOG, [CatalogItem(item_id, title, path, price=10.0) for item_id, (title, path) in ITEMS.items()]
    )
    writer.upsert_bundles(
        CATALOG,
        [CatalogBundle(bundle_id, f"Bundle {n}", items) for n, (bundle_id, items) in enumerate(BUNDLES.items())],
    )
    return writer


def backfill(stack: LocalStack) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO_ROOT / "bin" / "bundlewise"), "backfill-vectors", "--catalogs", CATALOG, "--batch", "2"],
        env=stack.service_env("cli"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def embedded(writer: CatalogWriter, stack: LocalStack) -> str:
    """The backfill's output; the ranker has reloaded its copy with the vectors when this returns."""
    done = backfill(stack)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: search(stack, "tent").status_code, lambda status: status == 200, 30, "the ranker's reload")
    return done.stdout


def search(stack: LocalStack, q: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{stack.gateway_url}/v1/bundles/search",
        params={"q": q, "catalog_id": CATALOG, **params},
        headers=stack.auth_headers(),
        timeout=10,
    )


def found(stack: LocalStack, q: str, k: int = 5) -> list[str]:
    reply = search(stack, q, k=k)
    assert reply.status_code == 200, reply.text
    return [bundle["bundle_id"] for bundle in reply.json()["bundles"]]


def test_the_backfill_embeds_every_live_bundle_then_nothing_when_rerun(
    embedded: str, stack: LocalStack, redis_client: redis.Redis, namespace: str
) -> None:
    keys = NamespaceKeys(namespace).catalog(CATALOG)
    assert f"{CATALOG}: 5 live bundles: 5 embedded, 0 unchanged" in embedded
    assert sorted(redis_client.hkeys(keys.bundle_vectors())) == sorted(BUNDLES)
    assert str(redis_client.hget(keys.bundle_vectors_meta(), "model_version")).startswith("multilingual-e5-small@")
    version = redis_client.get(keys.catalog_version())

    again = backfill(stack)

    assert again.returncode == 0, again.stderr
    assert f"{CATALOG}: 5 live bundles: 0 embedded, 5 unchanged" in again.stdout
    assert redis_client.get(keys.catalog_version()) == version  # nothing changed: rankers keep their copy


def test_an_english_query_finds_the_bundle_of_its_items(embedded: str, stack: LocalStack) -> None:
    reply = search(stack, "coffee maker")

    assert reply.status_code == 200, reply.text
    answer = reply.json()
    first = answer["bundles"][0]
    assert first["bundle_id"] == "coffee"
    assert [item["item_id"] for item in first["items"]] == ["espresso", "grinder", "frother"]
    assert first["items"][0]["title"] == "Espresso machine with steam wand"
    assert first["total_price"] == 30.0
    assert first["explanation"] == "Matches your search “coffee maker”"
    scores = [bundle["score"] for bundle in answer["bundles"]]
    assert scores == sorted(scores, reverse=True)
    assert 0 < scores[0] <= 1
    assert answer["model_version"].startswith("multilingual-e5-small@")


def test_a_chinese_query_finds_the_bundle_of_its_items(embedded: str, stack: LocalStack) -> None:
    assert found(stack, "露营帐篷和睡袋")[0] == "camping"  # a camping tent and sleeping bag
    assert found(stack, "菜刀")[0] == "kitchen"  # a kitchen knife


def test_a_retired_bundle_and_a_bundle_holding_a_retired_item_are_never_answered(
    embedded: str, stack: LocalStack, writer: CatalogWriter
) -> None:
    assert set(found(stack, "camera", k=10)) == set(BUNDLES)

    writer.upsert_bundles(CATALOG, [CatalogBundle("camera", "Bundle 2", BUNDLES["camera"], retired=True)])
    writer.retire_items(CATALOG, ["camera-bag"])

    # Right after the writes (the ranker's copy may still be reloading) and after the reload alike.
    for _ in range(5):
        assert set(found(stack, "camera", k=10)) == {"camping", "coffee", "kitchen"}


@pytest.mark.parametrize(
    ("params", "status", "named"),
    [
        ({"q": "   "}, 422, "query.q"),
        ({"q": "x" * 201}, 422, "query.q"),
        ({"q": "tent", "k": 0}, 422, "query.k"),
        ({"q": "tent", "catalog_id": "no-such-catalog"}, 404, "ranker: catalog 'no-such-catalog'"),
    ],
)
def test_bad_input_is_a_4xx_problem_saying_what_to_change(
    embedded: str, stack: LocalStack, params: dict[str, Any], status: int, named: str
) -> None:
    reply = httpx.get(
        f"{stack.gateway_url}/v1/bundles/search",
        params={"catalog_id": CATALOG, **params},
        headers=stack.auth_headers(),
        timeout=10,
    )

    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["detail"].startswith(named)


def speak(text: str) -> bytes:
    """``text`` spoken by Debian's espeak-ng, as a WAV clip."""
    spoken = subprocess.run(["espeak-ng", "-v", "en-us", "--stdout", text], capture_output=True, check=True, timeout=30)
    return spoken.stdout


def spoken_search(stack: LocalStack, audio: bytes, **params: Any) -> httpx.Response:
    return httpx.post(
        f"{stack.gateway_url}/v1/bundles/search/spoken",
        params={"catalog_id": CATALOG, "k": 3, **params},
        content=audio,
        headers={**stack.auth_headers(), "Content-Type": "audio/wav"},
        timeout=60,
    )


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing: run make test-tools")
def test_a_spoken_query_is_transcribed_and_finds_the_bundle_of_its_items(embedded: str, stack: LocalStack) -> None:
    reply = spoken_search(stack, speak("espresso machine and coffee grinder"))

    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert "espresso" in answer["query"].lower()
    assert answer["language"] == "en"
    assert answer["bundles"][0]["bundle_id"] == "coffee"


def test_a_clip_that_is_not_audio_is_a_400_problem_saying_why(embedded: str, stack: LocalStack) -> None:
    reply = spoken_search(stack, b"certainly not a recording" * 20)

    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert "decodable" in reply.json()["detail"]
