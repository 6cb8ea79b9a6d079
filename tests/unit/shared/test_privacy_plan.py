"""What deleting a shopper changes in Redis, computed from their events: pure, no servers."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.events import EVENT_ADAPTER, Event
from shared.store import feature_updates, privacy
from shared.store.privacy import ErasureUnsupported, SessionRun, plan_erasure, simulate_basket
from shared.store.redis_keys import NamespaceKeys

KEYS = NamespaceKeys("t").catalog("shop")
T0 = datetime(2014, 7, 22, tzinfo=UTC)


def event(kind: str, user: str, item: str = "", session: str | None = None, minute: int = 0, **extra: Any) -> Event:
    body: dict[str, Any] = {
        "type": kind,
        "event_id": f"evt-{user}-{kind}-{item or 'x'}-{minute}",
        "catalog_id": "shop",
        "user_id": user,
        "event_time": T0 + timedelta(minutes=minute),
        **extra,
    }
    if item:
        body["item_id"] = item
    if session:
        body["session_id"] = session
    return EVENT_ADAPTER.validate_python(body)


def test_a_basket_counts_each_pair_once_in_both_directions() -> None:
    basket = simulate_basket([("a", 1), ("b", 2), ("a", 3), ("c", 4)], cap=50)

    assert basket.pairs == Counter(
        {("a", "b"): 1, ("b", "a"): 1, ("a", "c"): 1, ("c", "a"): 1, ("b", "c"): 1, ("c", "b"): 1}
    )
    assert basket.items == {"a": 3, "b": 2, "c": 4}


def test_a_full_basket_drops_its_oldest_item_which_then_pairs_with_nothing_new() -> None:
    basket = simulate_basket([("a", 1), ("b", 2), ("c", 3), ("d", 4)], cap=2)

    assert basket.items == {"c": 3, "d": 4}
    assert basket.pairs[("c", "a")] == 1  # "a" was still there when "c" came
    assert basket.pairs[("d", "a")] == 0
    assert basket.pairs[("d", "b")] == 1
    assert basket.pairs[("d", "c")] == 1


def test_a_full_basket_breaks_ties_in_time_by_member_bytes_as_redis_does() -> None:
    assert simulate_basket([("b", 1), ("a", 1), ("c", 1)], cap=2).items == {"b": 1, "c": 1}


def test_the_plan_subtracts_the_users_interactions_and_drops_their_own_keys() -> None:
    events = [
        event("view", "u", "i1", minute=0),
        event("purchase", "u", "i1", minute=1),
        event(
            "bundle_impression",
            "u",
            impression_id="imp1",
            bundles=[{"bundle_id": "b1", "position": 0, "propensity": 0.5}],
        ),
        event("bundle_click", "u", bundle_id="b1", minute=2),
        event("bundle_purchase", "u", bundle_id="b1"),
        event("search", "u", query="tent"),
    ]

    plan = plan_erasure("u", events, {}, KEYS)

    assert plan.zsets == Counter(
        {
            (KEYS.item_popularity(), "i1"): 6,
            (KEYS.item_popularity_day("20140722"), "i1"): 6,
            (KEYS.bundle_popularity(), "b1"): 1,
        }
    )
    assert plan.hashes == Counter(
        {
            (KEYS.bundle_stats("b1"), "impressions"): 1,
            (KEYS.bundle_stats("b1"), "clicks"): 1,
            (KEYS.bundle_stats("b1"), "purchases"): 1,
        }
    )
    assert plan.delete == {
        KEYS.user_recent_items("u"),
        KEYS.user_categories("u"),
        KEYS.user_bundles("u"),
        KEYS.user_bundle_looks("u"),
        KEYS.user_bundle_clicks("u"),
    }
    assert plan.sessions == {}


def test_the_plan_takes_the_users_pairs_out_of_a_session_they_shared_and_keeps_the_rest() -> None:
    shared = SessionRun(
        [
            (event("add_to_cart", "v", "a", "s", minute=0), False),
            (event("add_to_cart", "u", "b", "s", minute=1), True),
            (event("purchase", "v", "c", "s", minute=2), False),
        ]
    )

    plan = plan_erasure("u", [event("add_to_cart", "u", "b", "s", minute=1)], {"s": shared}, KEYS)

    neighbours = KEYS.item_neighbours
    assert {(k, m): n for (k, m), n in plan.zsets.items() if k.startswith(neighbours(""))} == {
        (neighbours("a"), "b"): 1,
        (neighbours("b"), "a"): 1,
        (neighbours("b"), "c"): 1,
        (neighbours("c"), "b"): 1,
    }
    ts = int(T0.timestamp())
    assert plan.sessions == {KEYS.session_items("s"): [("a", ts), ("c", ts + 120)]}


def test_removing_a_user_from_a_full_basket_gives_back_the_pairs_their_items_had_pushed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feature_updates, "SESSION_ITEMS_CAP", 2)
    run = [
        (event("add_to_cart", "v", "a", "s", minute=0), False),
        (event("add_to_cart", "u", "b", "s", minute=1), True),
        (event("add_to_cart", "u", "c", "s", minute=2), True),
        (event("add_to_cart", "v", "d", "s", minute=3), False),
    ]

    plan = plan_erasure("u", [e for e, mine in run if mine], {"s": SessionRun(run)}, KEYS)

    # With u, "a" was pushed out before "d" came; without u, "d" meets "a": that pair must be added.
    assert plan.zsets[(KEYS.item_neighbours("d"), "a")] == -1
    assert plan.zsets[(KEYS.item_neighbours("a"), "d")] == -1
    assert plan.zsets[(KEYS.item_neighbours("d"), "c")] == 1
    ts = int(T0.timestamp())
    assert plan.sessions == {KEYS.session_items("s"): [("a", ts), ("d", ts + 180)]}


def test_an_effect_the_plan_cannot_undo_stops_the_erasure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(privacy, "redis_ops", lambda event, keys: [["pfadd", "k", "x"]])

    with pytest.raises(ErasureUnsupported, match="pfadd"):
        plan_erasure("u", [event("view", "u", "i1")], {}, KEYS)


@pytest.mark.parametrize(
    "op",
    [["sadd", KEYS.user_bundles("v"), "b1"], ["hincrfloat", KEYS.user_bundle_looks("v"), "b1", "1.0"]],
    ids=["bought", "looks"],
)
def test_an_effect_on_someone_elses_key_stops_the_erasure(monkeypatch: pytest.MonkeyPatch, op: list[str]) -> None:
    monkeypatch.setattr(privacy, "redis_ops", lambda event, keys: [op])

    with pytest.raises(ErasureUnsupported, match="not the user's own"):
        plan_erasure("u", [event("view", "u", "i1")], {}, KEYS)
