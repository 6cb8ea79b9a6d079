"""The contextual bandit, end to end on the real services: the suite's policy service runs the default
policy kind (the contextual bandit). Once it has published a catalog's first snapshot, the gateway's
answers carry each bundle's features; the storefront sends them back with its `shown` feedback, the
shoppers' clicks reach the policy through Kafka, the policy learns from the logged features and
publishes, and the ranker serves what it learned."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import redis
from sqlalchemy import Engine

from scripts.local_stack import LocalStack
from shared.bandit_features import FEATURES
from shared.store.catalog import CatalogBundle, CatalogItem, CatalogWriter
from tests.integration.waiting import wait_for

CATALOG = "banditgarden"
ITEMS = {f"g{n}": (f"Garden thing {n}", 5.0 + n, ("Garden", "Tools")) for n in range(12)}
KITS = {f"kit-{c}": (f"g{n}", f"g{n + 1}", f"g{n + 2}") for n, c in enumerate("abcdefghij")}
K = 4


def answer(stack: LocalStack, user_id: str, request_id: str) -> dict[str, Any]:
    reply = httpx.get(
        f"{stack.gateway_url}/v1/users/{user_id}/bundles",
        params={"catalog_id": CATALOG, "k": K, "request_id": request_id},
        headers=stack.auth_headers(),
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def send_feedback(stack: LocalStack, body: dict[str, Any]) -> None:
    reply = httpx.post(f"{stack.gateway_url}/v1/feedback", json=body, headers=stack.auth_headers(), timeout=10)
    assert reply.status_code == 200, reply.text


def show(stack: LocalStack, user_id: str, served: dict[str, Any], clicked: str | None) -> None:
    """What a storefront does with an answer: reports it shown, with everything it logged per bundle,
    then the shopper's click on ``clicked`` when it was shown."""
    common = {"catalog_id": CATALOG, "user_id": user_id, "impression_id": served["impression_id"]}
    bundles = [
        {
            "bundle_id": b["bundle_id"],
            "position": n,
            "propensity": b["propensity"],
            "policy_features": b["policy_features"],
        }
        for n, b in enumerate(served["bundles"])
    ]
    send_feedback(
        stack,
        {
            **common,
            "feedback_id": f"fb-shown-{served['impression_id']}",
            "action": "shown",
            "policy_version": served["policy_version"],
            "bundles": bundles,
        },
    )
    if clicked in [b["bundle_id"] for b in served["bundles"]]:
        send_feedback(
            stack,
            {**common, "feedback_id": f"fb-click-{served['impression_id']}", "action": "clicked", "bundle_id": clicked},
        )


def tick(stack: LocalStack) -> None:
    """Any event moves the policy's event-time watermark on, which closes the impressions whose join
    window has passed: only closed impressions are learned from."""
    event = {
        "type": "view",
        "event_id": f"tick-{uuid.uuid4().hex}",
        "catalog_id": CATALOG,
        "user_id": "passer-by",
        "event_time": datetime.now(UTC).isoformat(),
        "item_id": "g0",
    }
    reply = httpx.post(
        f"{stack.gateway_url}/v1/events", json={"events": [event]}, headers=stack.auth_headers(), timeout=10
    )
    assert reply.status_code == 200, reply.text


def position_of(served: dict[str, Any], bundle_id: str) -> int:
    """Where ``bundle_id`` is in the answer; K when it is not in it."""
    shown = [b["bundle_id"] for b in served["bundles"]]
    return shown.index(bundle_id) if bundle_id in shown else K


def test_the_bandit_serves_logs_its_features_learns_from_clicks_and_serves_what_it_learned(
    stack: LocalStack, engine: Engine, redis_client: redis.Redis, namespace: str
) -> None:
    writer = CatalogWriter(engine, redis_client, namespace)
    writer.upsert_catalog(CATALOG, "Bandit garden", "tests", "EUR")
    writer.upsert_items(CATALOG, [CatalogItem(i, t, c, p) for i, (t, p, c) in ITEMS.items()])
    writer.upsert_bundles(CATALOG, [CatalogBundle(b, f"Kit {b}", members) for b, members in KITS.items()])
    # Nobody has bought a kit yet: the ranker's order for a new shopper is the kits' id order.

    # Cold: no snapshot yet, so no features; the first impression makes the policy publish one.
    cold = wait_for(lambda: answer(stack, "cold-shopper", "cold"), lambda a: len(a["bundles"]) == K, 30, "bundles")
    assert all(b["policy_features"] is None for b in cold["bundles"])
    show(stack, "cold-shopper", cold, clicked=None)
    first = wait_for(
        lambda: answer(stack, "shopper-0", "first-bandit-answer"),
        lambda a: a["bundles"][0]["policy_features"] is not None,
        60,
        "an answer chosen by the bandit",
    )
    assert all(len(b["policy_features"]) == len(FEATURES) for b in first["bundles"])
    ranker_order = [b["bundle_id"] for b in first["bundles"]]
    assert ranker_order == ["kit-a", "kit-b", "kit-c", "kit-d"]  # nothing learned yet: the ranker's order

    # Shoppers click kit-d whenever it is shown, and nothing else. The policy learns from the logged
    # features and clicks of the closed impressions, publishes, and the ranker serves it: kit-d climbs
    # to the top (on the way the bandit may try the bundles it knows least, which nobody clicks).
    shoppers = iter(range(10**6))

    def storefront_visit() -> dict[str, Any]:
        user = f"shopper-{next(shoppers)}"
        served = answer(stack, user, f"visit-{user}")
        show(stack, user, served, clicked="kit-d")
        tick(stack)
        return served

    learned = wait_for(storefront_visit, lambda a: position_of(a, "kit-d") == 0, 120, "kit-d to reach the top")
    assert int(learned["policy_version"]) > int(first["policy_version"])
    assert all(len(b["policy_features"]) == len(FEATURES) for b in learned["bundles"])
