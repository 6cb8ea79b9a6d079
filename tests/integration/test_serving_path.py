"""Bundles: gateway -> ranker -> featurestore (and policy), on the real Amazon and Steam catalogs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import pytest
from bundlewise.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from bundlewise.policy.v1 import policy_pb2, policy_pb2_grpc
from sqlalchemy import Engine

from scripts.local_stack import LocalStack
from shared.grpc_client import open_channel
from tests.integration.catalog_fixture import load_catalogs_into
from tests.integration.waiting import wait_for


@pytest.fixture(scope="module")
def catalogs(stack: LocalStack, engine: Engine) -> None:
    load_catalogs_into(stack, engine, "amazon,steam")
    load_catalogs_into(stack, engine, "youshu", events=False)


def bundles(stack: LocalStack, user_id: str, **params: str | int | float | list[str]) -> httpx.Response:
    return httpx.get(
        f"{stack.gateway_url}/v1/users/{user_id}/bundles", params=params, headers=stack.auth_headers(), timeout=10
    )


def test_a_shopper_with_history_gets_personal_bundles_of_real_items(catalogs: None, stack: LocalStack) -> None:
    reply = bundles(stack, "electronic-u1", catalog_id="amazon", k=5)

    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["cold_start"] is False
    assert len(answer["bundles"]) == 5
    first = answer["bundles"][0]
    assert first["items"]
    assert all(item["title"] for item in first["items"])
    assert first["explanation"].startswith(("Often bought with", "Includes", "Matches your interest"))
    assert 0 < first["propensity"] <= 1
    assert reply.headers["x-request-id"]


def test_a_shopper_with_sparse_history_stays_in_their_part_of_the_catalog(catalogs: None, stack: LocalStack) -> None:
    # clothing-u1's items are in no other shopper's bundle: co-purchases alone would find nothing.
    answer = bundles(stack, "clothing-u1", catalog_id="amazon", k=5).json()

    item_ids = [item["item_id"] for b in answer["bundles"] for item in b["items"]]
    assert item_ids
    assert all(i.startswith("clothing-") for i in item_ids)
    assert any(b["explanation"].startswith("Matches your interest in") for b in answer["bundles"])


def test_a_shopper_never_seen_gets_popular_bundles(catalogs: None, stack: LocalStack) -> None:
    answer = bundles(stack, f"stranger-{uuid.uuid4().hex[:6]}", catalog_id="amazon", k=4).json()

    assert answer["cold_start"] is True
    assert len(answer["bundles"]) == 4


def chosen_not_explored(stack: LocalStack, user_id: str, tries: int = 10, **params: str | int) -> dict[str, Any]:
    """An answer whose first bundle the policy chose on purpose: the catalog's policy may by then be a
    contextual bandit learned from earlier tests' feedback, which shows a uniformly random list now
    and then (its first bundle then has a propensity of epsilon / pool size, far below one half)."""
    for _ in range(tries):
        answer: dict[str, Any] = bundles(stack, user_id, **params).json()
        if answer["bundles"] and answer["bundles"][0]["propensity"] > 0.5:
            return answer
    raise AssertionError(f"{tries} answers in a row explored: {answer}")


def test_a_cart_pulls_in_bundles_that_complete_it(catalogs: None, stack: LocalStack) -> None:
    answer = chosen_not_explored(stack, "cart-shopper", catalog_id="amazon", k=5, anchor_item_id="electronic-126")

    assert any("electronic-126" in [i["item_id"] for i in b["items"]] for b in answer["bundles"])


def test_a_price_cap_is_respected_on_the_priced_catalog(catalogs: None, stack: LocalStack) -> None:
    answer = bundles(stack, "gamer", catalog_id="steam", k=10, max_total_price=20).json()

    assert answer["bundles"]
    prices = [b["total_price"] for b in answer["bundles"]]
    assert all(p is not None and p <= 20 for p in prices), prices


def test_bundles_of_hundreds_of_items_are_served_whole(catalogs: None, stack: LocalStack) -> None:
    # Youshu's book lists hold up to hundreds of books: more ids than one feature-store read takes.
    cart = [f"i{i}" for i in range(0, 2000, 40)]

    answer = bundles(stack, "reader", catalog_id="youshu", k=40, anchor_item_id=cart)

    assert answer.status_code == 200, answer.text
    assert sum(len(b["items"]) for b in answer.json()["bundles"]) > 1000


def test_an_unknown_catalog_is_a_404_problem(stack: LocalStack) -> None:
    reply = bundles(stack, "u1", catalog_id="no-such-catalog", k=3)

    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert "no-such-catalog" in reply.json()["detail"]


def test_the_embedding_service_embeds_product_titles_with_the_real_model(stack: LocalStack) -> None:
    stub = embedding_pb2_grpc.EmbeddingStub(open_channel(stack.address("embedding")))

    reply = stub.EmbedTexts(
        embedding_pb2.EmbedTextsRequest(texts=["AA rechargeable batteries", "NiMH battery charger"]), timeout=30
    )

    assert reply.dim == 384
    assert [len(v.values) for v in reply.vectors] == [384, 384]
    assert reply.model_version


def test_bundle_outcomes_posted_as_events_publish_a_policy_the_ranker_swaps_in(
    catalogs: None, stack: LocalStack
) -> None:
    now = datetime.now(UTC).isoformat()
    impression = uuid.uuid4().hex
    shown = {
        "type": "bundle_impression",
        "event_id": f"imp-{impression}",
        "catalog_id": "amazon",
        "user_id": "electronic-u1",
        "event_time": now,
        "impression_id": impression,
        "bundles": [{"bundle_id": "electronic-b320", "position": 0, "propensity": 1.0}],
    }
    clicked = {
        "type": "bundle_click",
        "event_id": f"clk-{impression}",
        "catalog_id": "amazon",
        "user_id": "electronic-u1",
        "event_time": now,
        "impression_id": impression,
        "bundle_id": "electronic-b320",
    }
    assert (
        httpx.post(
            f"{stack.gateway_url}/v1/events",
            json={"events": [shown, clicked]},
            headers=stack.auth_headers(),
            timeout=10,
        ).status_code
        == 200
    )

    stub = policy_pb2_grpc.PolicyStub(open_channel(stack.address("policy")))

    def snapshot() -> policy_pb2.PolicySnapshot | None:
        try:
            reply: policy_pb2.PolicySnapshot = stub.GetCurrentPolicy(
                policy_pb2.GetCurrentPolicyRequest(catalog_id="amazon"), timeout=2
            )
        except grpc.RpcError:
            return None
        return reply

    # Other tests' bundle events may have published versions of this catalog before: wait for the one
    # that learned from these.
    published = wait_for(
        snapshot,
        lambda s: s is not None and any(arm.bundle_id == "electronic-b320" for arm in s.arms),
        30,
        "a policy version that learned electronic-b320",
    )
    assert published is not None
    arms = {arm.bundle_id: (arm.alpha, arm.beta) for arm in published.arms}
    assert arms["electronic-b320"] == (2.0, 20.0)  # the default Beta(1, 20) prior plus one click
    served = wait_for(
        lambda: bundles(stack, "electronic-u1", catalog_id="amazon", k=3).json()["policy_version"],
        lambda v: int(v) >= published.version,
        30,
        "the ranker to swap in the published policy",
    )
    assert int(served) >= 1


def test_an_item_page_gets_the_items_bought_with_it_most_often_first(catalogs: None, stack: LocalStack) -> None:
    # electronic session 232 holds items 10675 and 3500: bought together in at least that basket
    reply = httpx.get(
        f"{stack.gateway_url}/v1/items/electronic-10675/related",
        params={"catalog_id": "amazon", "k": 50},
        headers=stack.auth_headers(),
        timeout=10,
    )

    assert reply.status_code == 200, reply.text
    related = reply.json()["items"]
    assert "electronic-3500" in [r["item"]["item_id"] for r in related]
    assert all(r["item"]["title"] for r in related)
    assert "electronic-10675" not in [r["item"]["item_id"] for r in related]
    counts = [r["bought_together"] for r in related]
    assert counts == sorted(counts, reverse=True)
    assert related[0]["explanation"].startswith("Bought together in")


def test_an_item_the_catalog_does_not_know_is_a_404_problem(catalogs: None, stack: LocalStack) -> None:
    reply = httpx.get(
        f"{stack.gateway_url}/v1/items/no-such-item/related",
        params={"catalog_id": "amazon"},
        headers=stack.auth_headers(),
        timeout=10,
    )

    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert "no-such-item" in reply.json()["detail"]
