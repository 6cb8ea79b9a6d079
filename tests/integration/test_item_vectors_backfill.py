"""Item vectors end to end: a small catalog synced through the gateway's catalog API, then
`bundlewise backfill-vectors` embeds its live items with the running embedding service's item fusion
(EmbedItems) into `item_vectors`; a rerun embeds nothing, and an item retired through the API loses
its vector at the next run. The stack's embedding service must have the fusion (shipped in
services/embedding/weights/item-fusion.npz, loaded when `make models` has prepared multilingual-e5):
without it these tests fail saying so."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import redis
from bundlewise.embedding.v1 import embedding_pb2, embedding_pb2_grpc

from scripts.local_stack import REPO_ROOT, LocalStack
from shared.grpc_client import open_channel
from shared.store.redis_keys import CatalogKeys, NamespaceKeys
from shared.store.vectors import vector_from_field

CATALOG = "itemvecshop"
ITEMS = {
    "tent": ("Two-person dome tent, waterproof", ["Sports & Outdoors", "Camping & Hiking", "Tents"]),
    "stove": ("Portable gas camping stove", ["Sports & Outdoors", "Camping & Hiking", "Camp Kitchen"]),
    "espresso": ("Espresso machine with steam wand", ["Home & Kitchen", "Coffee, Tea & Espresso"]),
    "grinder": ("Burr coffee grinder", ["Home & Kitchen", "Coffee, Tea & Espresso"]),
    "tripod": ("Aluminium camera tripod", ["Electronics", "Camera & Photo", "Tripods"]),
    "gift-card": ("Gift card", []),  # no category path: embedded from its title alone
}
BUNDLES = {"camping": ["tent", "stove"], "coffee": ["espresso", "grinder"]}
DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def fusion(stack: LocalStack) -> embedding_pb2.ModelInfo:
    """The item fusion the stack's embedding service lists; the tests fail when it has none."""
    channel = open_channel(stack.address("embedding"))
    try:
        stub = embedding_pb2_grpc.EmbeddingStub(channel)
        described: embedding_pb2.DescribeModelsResponse = stub.DescribeModels(
            embedding_pb2.DescribeModelsRequest(), timeout=DEADLINE_S
        )
        listed = [m for m in described.models if m.modality == "item"]
        if listed:
            return listed[0]
        try:
            stub.EmbedItems(
                embedding_pb2.EmbedItemsRequest(items=[embedding_pb2.ItemInput(title="probe")]), timeout=DEADLINE_S
            )
            reason = "EmbedItems answered although DescribeModels lists no fusion"
        except grpc.RpcError as exc:
            reason = f"EmbedItems answers {exc.code().name}: {exc.details()}"
    finally:
        channel.close()
    loaded = ", ".join(f"{m.modality} {m.version}" for m in described.models)
    pytest.fail(
        f"the integration stack's embedding service has no item fusion ({reason}; loaded: {loaded}); ship "
        "services/embedding/weights/item-fusion.npz for these encoders and run `make models`"
    )


def call(stack: LocalStack, method: str, path: str, body: Any = None) -> httpx.Response:
    reply = httpx.request(method, f"{stack.gateway_url}{path}", json=body, headers=stack.auth_headers(), timeout=30)
    assert reply.status_code == 200, reply.text
    return reply


@pytest.fixture(scope="module")
def keys(stack: LocalStack, namespace: str) -> CatalogKeys:
    """The catalog, synced through the gateway's catalog API."""
    call(stack, "PUT", f"/v1/catalogs/{CATALOG}", {"name": "Item vectors test shop", "currency": "EUR"})
    items = [{"item_id": i, "title": t, "category_path": path, "price": 10.0} for i, (t, path) in ITEMS.items()]
    call(stack, "POST", f"/v1/catalogs/{CATALOG}/items", {"items": items})
    bundles = [{"bundle_id": b, "name": f"Bundle {b}", "item_ids": members} for b, members in BUNDLES.items()]
    call(stack, "POST", f"/v1/catalogs/{CATALOG}/bundles", {"bundles": bundles})
    return NamespaceKeys(namespace).catalog(CATALOG)


def backfill(stack: LocalStack, *options: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(REPO_ROOT / "bin" / "bundlewise"), "backfill-vectors", "--catalogs", CATALOG, *options],
        env=stack.service_env("cli"),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def first_run(
    keys: CatalogKeys, fusion: embedding_pb2.ModelInfo, stack: LocalStack, redis_client: redis.Redis
) -> tuple[str, str | None]:
    """The first run's output, and the catalog version token before it."""
    before = redis_client.get(keys.catalog_version())
    return backfill(stack, "--item-batch", "4").stdout, str(before) if before is not None else None


def test_the_first_run_gives_every_live_item_a_unit_vector_of_the_fusion(
    first_run: tuple[str, str | None], keys: CatalogKeys, fusion: embedding_pb2.ModelInfo, redis_client: redis.Redis
) -> None:
    output, version_before = first_run

    assert f"item fusion {fusion.version} ({fusion.dim} dimensions)" in output
    assert f"  {CATALOG}: embedded 4/6 items (" in output
    assert f"  {CATALOG}: embedded 6/6 items (" in output
    assert f"{CATALOG}: 6 live items: 6 embedded, 0 unchanged, 0 removed (retired, untitled or gone); " in output
    stored = redis_client.hgetall(keys.item_vectors())
    assert sorted(stored) == sorted(ITEMS)
    for item_id, field in stored.items():
        vector = vector_from_field(field)
        assert vector.shape == (fusion.dim,), item_id
        assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5), item_id
    assert sorted(redis_client.hkeys(keys.item_vector_digests())) == sorted(ITEMS)
    assert redis_client.smembers(keys.catalog_items()) == set(ITEMS)  # what the backfill lists items by
    assert redis_client.hgetall(keys.item_vectors_meta()) == {
        "model": fusion.name,
        "model_version": fusion.version,
        "dim": str(fusion.dim),
    }
    assert redis_client.get(keys.catalog_version()) != version_before


def test_the_ranker_completes_a_bundle_around_an_item_without_sales_with_the_items_nearest_it(
    first_run: tuple[str, str | None], stack: LocalStack
) -> None:
    # Nobody bought anything in this shop: the tent has no co-purchases, so only the item space can
    # say what goes with it. The ranker reloads its catalog copy (with the new item vectors) in the
    # background after the backfill's new version token.
    path = f"/v1/users/camper/bundles?catalog_id={CATALOG}&k=5&anchor_item_id=tent"
    composed: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while not composed and time.monotonic() < deadline:
        answer = call(stack, "GET", path).json()
        composed = [b for b in answer["bundles"] if b["source"] == "generated"]
        if not composed:
            time.sleep(0.5)

    assert len(composed) == 1, "no bundle was composed around the tent within 20 s of the backfill"
    bundle = composed[0]
    members = [item["item_id"] for item in bundle["items"]]
    assert (bundle["name"], members[:2], len(members)) == ("Goes with it", ["tent", "stove"], 4)
    assert bundle["explanation"] == "Composed for you from items that go with it, by what shoppers bundle together"


def test_a_rerun_embeds_nothing_and_keeps_the_catalog_version(
    first_run: tuple[str, str | None], keys: CatalogKeys, stack: LocalStack, redis_client: redis.Redis
) -> None:
    vectors = redis_client.hgetall(keys.item_vectors())
    version = redis_client.get(keys.catalog_version())

    again = backfill(stack)

    assert f"{CATALOG}: 6 live items: 0 embedded, 6 unchanged, 0 removed" in again.stdout
    assert f"{CATALOG}: embedded" not in again.stdout  # no progress line: nothing was sent to embed
    assert redis_client.hgetall(keys.item_vectors()) == vectors
    assert redis_client.get(keys.catalog_version()) == version  # nothing changed: rankers keep their copy


def test_a_mirror_written_before_the_catalog_items_set_is_listed_by_a_scan(
    first_run: tuple[str, str | None], keys: CatalogKeys, stack: LocalStack, redis_client: redis.Redis
) -> None:
    redis_client.delete(keys.catalog_items())
    try:
        again = backfill(stack)
    finally:
        redis_client.sadd(keys.catalog_items(), *ITEMS)

    assert f"{CATALOG}: 6 live items: 0 embedded, 6 unchanged, 0 removed" in again.stdout


def test_no_items_embeds_the_bundles_only(
    first_run: tuple[str, str | None], keys: CatalogKeys, stack: LocalStack, redis_client: redis.Redis
) -> None:
    vectors = redis_client.hgetall(keys.item_vectors())

    done = backfill(stack, "--no-items")

    assert f"{CATALOG}: 2 live bundles: 0 embedded, 2 unchanged" in done.stdout
    assert "item fusion" not in done.stdout
    assert "live items" not in done.stdout
    assert redis_client.hgetall(keys.item_vectors()) == vectors


def test_an_item_retired_through_the_api_loses_its_vector_at_the_next_run(
    first_run: tuple[str, str | None], keys: CatalogKeys, stack: LocalStack, redis_client: redis.Redis
) -> None:
    kept = {i: v for i, v in redis_client.hgetall(keys.item_vectors()).items() if i != "tripod"}
    call(stack, "DELETE", f"/v1/catalogs/{CATALOG}/items/tripod")
    version = redis_client.get(keys.catalog_version())

    done = backfill(stack)

    assert f"{CATALOG}: 5 live items: 0 embedded, 5 unchanged, 1 removed" in done.stdout
    assert redis_client.hgetall(keys.item_vectors()) == kept
    assert not redis_client.hexists(keys.item_vector_digests(), "tripod")
    assert redis_client.get(keys.catalog_version()) != version
