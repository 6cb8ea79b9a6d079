"""Which Redis effects each event has (the pure half of shared.store.feature_updates)."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.events import EVENT_ADAPTER
from shared.store.feature_updates import redis_ops
from shared.store.redis_keys import NamespaceKeys

KEYS = NamespaceKeys("live").catalog("amazon")
WHEN = datetime(2014, 7, 22, 10, 0, tzinfo=UTC)
TS = int(WHEN.timestamp())


def event(**fields: object) -> object:
    base = {"event_id": "evt-00000001", "catalog_id": "amazon", "user_id": "u1", "event_time": WHEN}
    return EVENT_ADAPTER.validate_python({**base, **fields})


def test_a_purchase_in_a_session_updates_history_popularity_affinity_and_the_basket() -> None:
    ops = redis_ops(event(type="purchase", item_id="i1", session_id="s1"), KEYS)  # type: ignore[arg-type]

    assert ops == [
        ["recent", "bw:live:amazon:user_recent:u1", "i1", TS, 50],
        ["zincr", "bw:live:amazon:item_pop", 5, "i1"],
        ["zincr", "bw:live:amazon:item_pop_day:20140722", 5, "i1"],
        ["affinity", "bw:live:amazon:item:i1", "bw:live:amazon:user_cats:u1", 5],
        ["basket", "bw:live:amazon:session:s1", "i1", TS, "bw:live:amazon:cooc:", 50],
    ]


def test_a_view_counts_less_and_builds_no_basket() -> None:
    ops = redis_ops(event(type="view", item_id="i1", session_id="s1"), KEYS)  # type: ignore[arg-type]

    assert ["zincr", "bw:live:amazon:item_pop", 1, "i1"] in ops
    assert all(op[0] != "basket" for op in ops)


def test_bundle_outcomes_update_bundle_statistics() -> None:
    impression = event(
        type="bundle_impression",
        impression_id="imp1",
        bundles=[
            {"bundle_id": "b1", "position": 0, "propensity": 0.5},
            {"bundle_id": "b2", "position": 1, "propensity": 1},
        ],
    )
    bought = event(type="bundle_purchase", bundle_id="b1")

    assert redis_ops(impression, KEYS)[:2] == [  # type: ignore[arg-type]
        ["hincr", "bw:live:amazon:bundle_stats:b1", "impressions", 1],
        ["hincr", "bw:live:amazon:bundle_stats:b2", "impressions", 1],
    ]
    assert redis_ops(bought, KEYS) == [  # type: ignore[arg-type]
        ["hincr", "bw:live:amazon:bundle_stats:b1", "purchases", 1],
        ["zincr", "bw:live:amazon:bundle_pop", 1, "b1"],
        ["sadd", "bw:live:amazon:user_bundles:u1", "b1"],
    ]


def test_an_impression_adds_the_examination_prior_of_each_shown_position_to_the_shoppers_looks() -> None:
    impression = event(
        type="bundle_impression",
        impression_id="imp1",
        bundles=[
            {"bundle_id": "b7", "position": 2, "propensity": 0.5},
            {"bundle_id": "b1", "position": 0, "propensity": 0.5},
            {"bundle_id": "b2", "position": 3, "propensity": 1},
        ],
    )

    looks = [op for op in redis_ops(impression, KEYS) if op[0] == "hincrfloat"]  # type: ignore[arg-type]

    # 1 / (1 + position), as the shortest decimal that reads back as that float, in the order shown
    assert looks == [
        ["hincrfloat", "bw:live:amazon:user_bundle_looks:u1", "b7", "0.3333333333333333"],
        ["hincrfloat", "bw:live:amazon:user_bundle_looks:u1", "b1", "1.0"],
        ["hincrfloat", "bw:live:amazon:user_bundle_looks:u1", "b2", "0.25"],
    ]
    assert [float(op[3]) for op in looks] == [1 / 3, 1.0, 0.25]


def test_a_click_counts_for_the_bundle_and_joins_the_shoppers_clicked_bundles() -> None:
    clicked = event(type="bundle_click", bundle_id="b1", impression_id="imp1")

    assert redis_ops(clicked, KEYS) == [  # type: ignore[arg-type]
        ["hincr", "bw:live:amazon:bundle_stats:b1", "clicks", 1],
        ["sadd", "bw:live:amazon:user_bundle_clicks:u1", "b1"],
    ]


def test_a_search_changes_no_online_feature() -> None:
    assert redis_ops(event(type="search", query="camera kit"), KEYS) == []  # type: ignore[arg-type]
