"""Specification of a shadow candidate's propensities for a served list (pure, no I/O): the semantics
the ranker logs for its own choices, hand-computed, and its own log given back for its own list."""

from __future__ import annotations

import math

import pytest

from services.ranker import domain
from services.ranker.domain import PolicyParams

SOFTMAX = PolicyParams(version=1, temperature=1.0, ctr_weight=0.0)
GREEDY = PolicyParams(version=1, temperature=0.0, ctr_weight=0.0)


def mixture(epsilon: float) -> PolicyParams:
    return PolicyParams(version=1, temperature=0.1, ctr_weight=0.0, exploration="epsilon_mixture", epsilon=epsilon)


def test_softmax_gives_each_shown_bundle_its_probability_given_the_bundles_shown_above() -> None:
    scored = [("a", 0.0), ("b", math.log(3.0)), ("c", math.log(6.0))]  # softmax weights 1, 3, 6

    propensities = domain.shown_propensities(scored, 3, SOFTMAX, ["a", "c"])

    # a first: 1 of 10; then c among b and c: 6 of 9.
    assert propensities == pytest.approx([1 / 10, 6 / 9])


def test_a_shown_bundle_outside_the_candidates_best_3k_gets_0_and_leaves_the_others_unchanged() -> None:
    scored = [("a", 0.0), ("b", math.log(3.0)), ("c", math.log(6.0)), ("d", -5.0)]  # k=1: the pool is a, b, c

    propensities = domain.shown_propensities(scored, 1, SOFTMAX, ["d"])

    assert propensities == [0.0]
    assert domain.shown_propensities(scored, 1, SOFTMAX, ["c"]) == pytest.approx([6 / 10])


def test_a_greedy_candidate_gives_1_to_its_own_pick_among_those_left_and_0_otherwise() -> None:
    scored = [("a", 2.0), ("b", 3.0), ("c", 1.0)]

    assert domain.shown_propensities(scored, 2, GREEDY, ["b", "a"]) == [1.0, 1.0]
    assert domain.shown_propensities(scored, 2, GREEDY, ["b", "c"]) == [1.0, 0.0]
    assert domain.shown_propensities(scored, 2, GREEDY, ["a", "b"]) == [0.0, 1.0]  # b is the best left after a


def test_the_epsilon_mixture_gives_the_exact_marginal_of_each_bundle_at_its_position() -> None:
    scored = [("a", 2.0), ("b", 3.0), ("c", 1.0), ("d", 0.0)]  # greedy list of 2: b, a; M = 4 candidates

    assert domain.shown_propensities(scored, 2, mixture(0.2), ["b", "c"]) == pytest.approx([0.8 + 0.05, 0.05])
    assert domain.shown_propensities(scored, 2, mixture(0.2), ["a", "b"]) == pytest.approx([0.05, 0.05])


def test_the_epsilon_mixture_gives_0_to_a_bundle_outside_its_candidates() -> None:
    scored = [(f"b{n}", float(-n)) for n in range(8)]  # k=2: the candidates are b0..b5, M = 6

    assert domain.shown_propensities(scored, 2, mixture(0.3), ["b0", "b7"]) == pytest.approx([0.7 + 0.05, 0.0])


def test_a_candidate_scores_the_same_candidates_with_its_own_click_rates() -> None:
    base = [("a", 1.0), ("b", 1.0)]
    candidate = PolicyParams(version=0, temperature=1.0, ctr_weight=2.0, arms={"a": (3.0, 1.0)})

    # a's learned rate 3/4; b has no arm, so the default Beta(1, 20): 1/21.
    scores = domain.policy_scores(base, candidate)

    assert [bundle_id for bundle_id, _ in scores] == ["a", "b"]
    assert [score for _, score in scores] == pytest.approx([1.0 + 2.0 * 0.75, 1.0 + 2.0 / 21])
    assert domain.policy_scores(base, domain.DEFAULT_POLICY) == base


@pytest.mark.parametrize(
    "policy",
    [SOFTMAX, PolicyParams(version=1, temperature=0.05, ctr_weight=0.0), GREEDY, mixture(0.05), mixture(0.3)],
    ids=["softmax-t1", "softmax-t0.05", "greedy", "mixture-0.05", "mixture-0.3"],
)
def test_a_shadow_equal_to_the_served_policy_gives_exactly_the_served_propensities(policy: PolicyParams) -> None:
    scored = [(f"b{n}", math.sin(n) + 0.01 * n) for n in range(40)]

    for seed in range(50):
        chosen = domain.choose(scored, 5, policy, seed=f"shop:u1:{seed}")

        shadow = domain.shown_propensities(scored, 5, policy, [c.bundle_id for c in chosen])

        assert shadow == [c.propensity for c in chosen]


def test_the_shadow_changes_nothing_for_fewer_candidates_than_k() -> None:
    scored = [("a", 0.0), ("b", math.log(3.0))]

    chosen = domain.choose(scored, 5, SOFTMAX, seed="few")

    assert domain.shown_propensities(scored, 5, SOFTMAX, [c.bundle_id for c in chosen]) == [
        c.propensity for c in chosen
    ]
