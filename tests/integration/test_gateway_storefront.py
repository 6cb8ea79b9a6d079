"""The storefront's API end to end on the real servers and services: a catalog synced through the
gateway, feedback that lands in the event log once, retirement the ranker honours at once, and the
popular-bundles fallback (for the shopper's segment first) while the ranker is stopped or frozen."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from shared.store import tables
from shared.store.redis_keys import NamespaceKeys
from tests.integration.isolated_pipeline import IsolatedPipeline, isolated_pipeline
from tests.integration.waiting import wait_for

GARDEN = "garden"
ITEMS = {
    "g1": ("Spade", 20.0, ["Garden", "Tools"]),
    "g2": ("Rake", 15.0, ["Garden", "Tools"]),
    "g3": ("Tomato seeds", 3.0, ["Garden", "Seeds"]),
    "g4": ("Basil seeds", 2.5, ["Garden", "Seeds"]),
    "g5": ("Hose", 30.0, ["Garden", "Watering"]),
    "g6": ("Nozzle", 8.0, ["Garden", "Watering"]),
    "g7": ("Gloves", 9.0, ["Garden", "Wear"]),
    "g8": ("Kneeler", 12.0, ["Garden", "Wear"]),
}
KITS = {"kit-a": ("g1", "g2"), "kit-b": ("g3", "g4"), "kit-c": ("g5", "g6"), "kit-d": ("g7", "g8")}
# kit-a is bought three times (one purchase is sent twice: a retry), kit-b once.
PURCHASES = [("buyer-1", "kit-a"), ("buyer-2", "kit-a"), ("buyer-3", "kit-a"), ("buyer-4", "kit-b")]
SEED_LOVER = "seed-lover"


@dataclass(frozen=True)
class Storefront:
    pipeline: IsolatedPipeline
    headers: dict[str, str]
    feedback_ids: list[str]

    @property
    def url(self) -> str:
        return self.pipeline.stack.gateway_url

    def bundles(self, user_id: str, k: int = 10) -> httpx.Response:
        return httpx.get(
            f"{self.url}/v1/users/{user_id}/bundles",
            params={"catalog_id": GARDEN, "k": k},
            headers=self.headers,
            timeout=10,
        )

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", json=body, headers={**self.headers, **headers}, timeout=30)


def ids(reply: httpx.Response) -> list[str]:
    assert reply.status_code == 200, reply.text
    return [bundle["bundle_id"] for bundle in reply.json()["bundles"]]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storefront]:
    """The garden catalog synced through the API, its purchases reported as feedback and ingested."""
    services = ("ingestion", "featurestore", "policy", "ranker", "gateway")
    with isolated_pipeline("gwshop", tmp_path_factory.mktemp("gateway-shop-logs"), services) as pipeline:
        shop = Storefront(pipeline, pipeline.stack.auth_headers(), [])
        assert shop.call("PUT", f"/v1/catalogs/{GARDEN}", {"name": "Garden", "currency": "EUR"}).status_code == 200
        items = [
            {"item_id": i, "title": t, "price": p, "category_path": c, "image_url": f"https://img.example/{i}.jpg"}
            for i, (t, p, c) in ITEMS.items()
        ]
        assert shop.call("POST", f"/v1/catalogs/{GARDEN}/items", {"items": items}).status_code == 200
        kits = [{"bundle_id": b, "name": f"Kit {b[-1]}", "item_ids": list(m)} for b, m in KITS.items()]
        assert shop.call("POST", f"/v1/catalogs/{GARDEN}/bundles", {"bundles": kits}).status_code == 200

        for n, (buyer, kit) in enumerate(PURCHASES):
            feedback_id = f"fb-{pipeline.run_id}-{n:02d}"
            body = {
                "feedback_id": feedback_id,
                "action": "bought",
                "catalog_id": GARDEN,
                "user_id": buyer,
                "impression_id": f"imp-{n}",
                "bundle_id": kit,
                "revenue": 30.0,
            }
            for _ in range(2 if n == 0 else 1):  # the first is retried: it must count once
                reply = shop.call("POST", "/v1/feedback", body)
                assert reply.status_code == 200, reply.text
            shop.feedback_ids.append(feedback_id)
        seed_interest = {
            "type": "purchase",
            "event_id": f"ev-{pipeline.run_id}-seeds",
            "catalog_id": GARDEN,
            "user_id": SEED_LOVER,
            "item_id": "g3",
            "event_time": datetime.now(UTC).isoformat(),
        }
        assert shop.call("POST", "/v1/events", {"events": [seed_interest]}).status_code == 200
        pipeline.wait_until_stored([*shop.feedback_ids, seed_interest["event_id"]])
        keys = NamespaceKeys(pipeline.namespace).catalog(GARDEN)
        wait_for(lambda: pipeline.redis.zscore(keys.bundle_popularity(), "kit-b"), bool, 30, "kit-b's purchase")
        wait_for(lambda: pipeline.redis.zrange(keys.user_categories(SEED_LOVER), 0, -1), bool, 30, "the affinity")
        yield shop


def test_feedback_is_stored_once_per_client_id_as_bundle_purchases(shop: Storefront) -> None:
    with shop.pipeline.engine.connect() as conn:
        rows = conn.execute(
            select(tables.events.c.event_id, tables.events.c.event_type, tables.events.c.bundle_id).where(
                tables.events.c.catalog_id == GARDEN, tables.events.c.event_type == "bundle_purchase"
            )
        ).all()
    keys = NamespaceKeys(shop.pipeline.namespace).catalog(GARDEN)

    assert sorted(rows) == sorted(
        (fid, "bundle_purchase", kit) for fid, (_, kit) in zip(shop.feedback_ids, PURCHASES, strict=True)
    )
    assert shop.pipeline.redis.zrevrange(keys.bundle_popularity(), 0, -1, withscores=True) == [
        ("kit-a", 3.0),
        ("kit-b", 1.0),
    ]


def test_the_ranker_serves_the_synced_catalog_with_its_titles_prices_and_images(shop: Storefront) -> None:
    reply = shop.bundles("newcomer-1", k=4)

    assert set(ids(reply)) <= set(KITS)
    answer = reply.json()
    assert answer["fallback"] is None
    assert answer["impression_id"].startswith("imp-")
    for bundle in answer["bundles"]:
        assert [item["item_id"] for item in bundle["items"]] == list(KITS[bundle["bundle_id"]])
        for item in bundle["items"]:
            title, price, _ = ITEMS[item["item_id"]]
            assert (item["title"], item["price"], item["image_url"]) == (
                title,
                price,
                f"https://img.example/{item['item_id']}.jpg",
            )


def test_a_retired_bundle_or_a_bundle_with_a_retired_item_is_never_ranked_again(shop: Storefront) -> None:
    before = ids(shop.bundles("newcomer-2"))
    assert {"kit-c", "kit-d"} <= set(before)

    assert shop.call("DELETE", f"/v1/catalogs/{GARDEN}/bundles/kit-c").json()["retired"] is True
    assert shop.call("DELETE", f"/v1/catalogs/{GARDEN}/items/g7").json()["retired"] is True

    for user in ("newcomer-2", "newcomer-3", "buyer-1", SEED_LOVER):
        assert {"kit-c", "kit-d"}.isdisjoint(ids(shop.bundles(user))), user
    assert shop.call("DELETE", f"/v1/catalogs/{GARDEN}/bundles/no-such-kit").status_code == 404


def test_with_the_ranker_stopped_the_answer_is_popular_bundles_segment_first_and_says_so(shop: Storefront) -> None:
    stack = shop.pipeline.stack
    assert stack.processes["ranker"].stop() == 0
    try:
        newcomer = shop.bundles("newcomer-4")
        seed_lover = shop.bundles(SEED_LOVER)
        assert shop.call("DELETE", f"/v1/catalogs/{GARDEN}/bundles/kit-b").status_code == 200
        after_retirement = shop.bundles(SEED_LOVER)
        metrics = httpx.get(f"{shop.url}/metrics", timeout=10).text
    finally:
        stack.start(("ranker",))

    assert newcomer.json()["fallback"] == {"reason": "ranker unavailable"}
    assert ids(newcomer)[:2] == ["kit-a", "kit-b"]  # by purchases
    assert ids(seed_lover)[:2] == ["kit-b", "kit-a"]  # the seed lover's category first
    assert seed_lover.json()["bundles"][0]["explanation"] == "Popular in Seeds"
    assert "kit-b" not in ids(after_retirement)
    assert 'bundlewise_gateway_fallbacks_total{reason="ranker_unavailable"} 3.0' in metrics


def test_with_the_ranker_frozen_past_its_deadline_the_answer_is_the_fallback_and_says_so(shop: Storefront) -> None:
    wait_for(lambda: shop.bundles("newcomer-5"), lambda r: r.json()["fallback"] is None, 60, "the ranker to answer")
    # SIGSTOP keeps the ranker's socket open but answers nothing: only the call's deadline ends the wait.
    ranker = shop.pipeline.stack.processes["ranker"].process
    os.kill(ranker.pid, signal.SIGSTOP)
    try:
        frozen = shop.bundles("newcomer-5")
        metrics = httpx.get(f"{shop.url}/metrics", timeout=10).text
    finally:
        os.kill(ranker.pid, signal.SIGCONT)

    assert frozen.json()["fallback"] == {"reason": "ranker timed out"}
    assert ids(frozen)[0] == "kit-a"  # the most bought kit still on sale
    assert 'bundlewise_gateway_fallbacks_total{reason="ranker_timed_out"} 1.0' in metrics
    thawed = wait_for(lambda: shop.bundles("newcomer-5"), lambda r: r.json()["fallback"] is None, 30, "the ranker")
    assert ids(thawed)
