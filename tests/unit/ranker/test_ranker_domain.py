"""Specification of the ranker's scoring, selection and explanations (pure, no I/O)."""

from __future__ import annotations

import math

import pytest

from services.ranker import domain
from services.ranker.domain import (
    DEFAULT_POLICY,
    BundleInfo,
    Constraints,
    ItemInfo,
    PolicyParams,
    UserSignals,
)


def bundle(bundle_id: str, items: tuple[str, ...], price: float | None = None, **kw: object) -> BundleInfo:
    fields: dict[str, object] = {
        "name": bundle_id,
        "discounted_price": None,
        "retired": False,
        "purchases": 0,
    }
    fields.update(kw)
    return BundleInfo(bundle_id=bundle_id, item_ids=items, price=price, **fields)  # type: ignore[arg-type]


def item(item_id: str, price: float | None = None, retired: bool = False) -> ItemInfo:
    return ItemInfo(item_id, f"Title of {item_id}", price, "", retired, ("Root", "Cameras"))


NO_SIGNALS = UserSignals((), frozenset(), ())


def test_an_anchor_outweighs_recent_history_and_neighbours_scale_with_co_purchases() -> None:
    weights = domain.item_weights(["r1", "r2"], ["a"], {"a": [("n1", 4.0), ("n2", 2.0)]})

    assert weights["a"] == (domain.ANCHOR_WEIGHT, "anchor", "a")
    assert weights["r1"] == (1.0, "recent", "r1")
    assert weights["r2"] == pytest.approx((1.0 / 1.1, "recent", "r2"))
    assert weights["n1"] == (domain.NEIGHBOUR_WEIGHT * domain.ANCHOR_WEIGHT, "neighbour", "a")
    assert weights["n2"] == (domain.NEIGHBOUR_WEIGHT * domain.ANCHOR_WEIGHT / 2, "neighbour", "a")


def test_a_bundle_scores_the_sum_of_its_items_weights_and_keeps_its_strongest_reason() -> None:
    weights = {"x": (1.0, "recent", "x"), "y": (3.0, "anchor", "y")}

    evidence = domain.score_bundles(weights, {"x": ["b1", "b2"], "y": ["b1"]})

    assert evidence["b1"].score == 4.0
    assert evidence["b1"].best_reason == (3.0, "anchor", "y")
    assert evidence["b2"].score == 1.0


def test_greedy_selection_takes_the_top_scores_with_probability_one() -> None:
    greedy = PolicyParams(version=1, temperature=0.0, ctr_weight=0.0)

    chosen = domain.choose([("a", 1.0), ("b", 3.0), ("c", 2.0)], 2, greedy, seed="s")

    assert [(c.bundle_id, c.propensity) for c in chosen] == [("b", 1.0), ("c", 1.0)]


def test_softmax_selection_logs_the_probability_of_each_pick_given_the_ones_above() -> None:
    policy = PolicyParams(version=1, temperature=1.0, ctr_weight=0.0)
    scored = [("a", 0.0), ("b", math.log(3.0))]  # softmax: a 1/4, b 3/4

    chosen = domain.choose(scored, 2, policy, seed="fixed")

    first, second = chosen
    assert first.propensity == pytest.approx(0.75 if first.bundle_id == "b" else 0.25)
    assert second.propensity == pytest.approx(1.0)
    assert domain.choose(scored, 2, policy, seed="fixed") == chosen  # reproducible per seed


def test_softmax_selection_frequencies_match_the_logged_propensities() -> None:
    policy = PolicyParams(version=1, temperature=1.0, ctr_weight=0.0)
    scored = [("a", 0.0), ("b", math.log(3.0))]

    firsts = [domain.choose(scored, 1, policy, seed=str(i))[0].bundle_id for i in range(4000)]

    assert firsts.count("b") / 4000 == pytest.approx(0.75, abs=0.03)


def test_constraints_bound_price_and_size() -> None:
    items = {"a": item("a", 10.0), "b": item("b", 15.0)}
    pair = bundle("p", ("a", "b"))

    assert Constraints(max_total_price=25.0).allows(pair, items)
    assert not Constraints(max_total_price=24.99).allows(pair, items)
    assert not Constraints(max_items=1).allows(pair, items)
    assert not Constraints(min_items=3).allows(pair, items)
    assert domain.effective_price(bundle("d", ("a",), price=9.0, discounted_price=4.5), items) == 4.5
    assert not Constraints(max_total_price=100).allows(bundle("u", ("a", "unknown")), items)


def test_retired_bought_or_empty_bundles_are_never_served() -> None:
    items = {"a": item("a"), "gone": item("gone", retired=True)}
    signals = UserSignals((), frozenset({"bought"}), ())

    assert domain.is_servable(bundle("ok", ("a",)), items, signals)
    assert not domain.is_servable(bundle("r", ("a",), retired=True), items, signals)
    assert not domain.is_servable(bundle("bought", ("a",)), items, signals)
    assert not domain.is_servable(bundle("x", ("a", "gone")), items, signals)
    assert not domain.is_servable(bundle("e", ()), items, signals)


def test_the_learned_click_rate_lifts_a_bundle_by_the_policy_weight() -> None:
    policy = PolicyParams(version=2, temperature=0.1, ctr_weight=2.0, arms={"b": (3.0, 1.0)})

    base = domain.base_score(1.0, bundle("b", ("a",)))
    assert domain.policy_score(base, "b", policy) == pytest.approx(1.0 + 2.0 * 0.75)
    assert domain.policy_score(base, "b", DEFAULT_POLICY) == 1.0


def test_explanations_name_the_real_signal() -> None:
    items = {"a": item("a"), "n": item("n")}
    b = bundle("b", ("a", "n"))

    def reason(kind: str, source: str) -> str:
        evidence = domain.Evidence(score=1.0, best_reason=(1.0, kind, source))
        return domain.explain(evidence, b, items, NO_SIGNALS)

    assert reason("anchor", "a") == "Completes your cart with Title of a"
    assert reason("recent", "a") == "Includes Title of a, which you looked at recently"
    assert reason("neighbour", "a") == "Often bought with Title of a"
    assert domain.explain(None, b, items, UserSignals((), frozenset(), ("Cameras",))) == (
        "Matches your interest in Cameras"
    )
    assert domain.explain(None, bundle("p", ("zz",), purchases=7), items, NO_SIGNALS) == "Popular: bought 7 times"


def test_bundles_of_a_shoppers_favourite_categories_earn_evidence_the_favourite_most() -> None:
    evidence: dict[str, domain.Evidence] = {}

    domain.add_category_evidence(evidence, ["Women", "Men"], {"Women": ["w1", "both"], "Men": ["both"]})

    assert evidence["w1"].score == pytest.approx(domain.CATEGORY_WEIGHT)
    assert evidence["both"].score == pytest.approx(domain.CATEGORY_WEIGHT * (1 + 1 / 1.5))
    assert domain.explain(evidence["w1"], bundle("w1", ("a",)), {}, NO_SIGNALS) == "Matches your interest in Women"


def test_a_bundle_bought_once_says_so() -> None:
    assert domain.explain(None, bundle("p", ("zz",), purchases=1), {}, NO_SIGNALS) == "Popular: bought once"
