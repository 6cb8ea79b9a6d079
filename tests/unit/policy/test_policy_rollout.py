"""Guard-railed refreshes, promotion only with off-policy evidence, and rollback as a new version."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from services.policy.bandit import BanditParams
from services.policy.domain import Arm, PolicyParams
from services.policy.rollout import OpeEvidence, PromotionRefused, PromotionRule, RefreshGuard, promote, rollback
from shared.errors import NotFound
from tests.unit.policy.policy_testkit import EVENT_TIME, InMemorySnapshotStore, bandit_params


def params(*arms: Arm, temperature: float = 0.1, ctr_weight: float = 1.0) -> PolicyParams:
    return PolicyParams(temperature, ctr_weight, 1.0, 20.0, tuple(arms), {("events", 0): 7})


def evidence(impressions: int = 20_000, low: float = 0.001) -> OpeEvidence:
    return OpeEvidence("dr", impressions, 0.12, 0.01, low, 0.02)


def test_a_refresh_moves_each_click_rate_at_most_the_allowed_step_and_keeps_the_counts() -> None:
    approved = params(Arm("b1", 100, 10, 11.0, 110.0), temperature=0.3, ctr_weight=2.0)  # mean 0.0909
    learned = params(Arm("b1", 150, 60, 61.0, 110.0, reward=55.5), Arm("b2", 10, 9, 10.0, 21.0))  # means 0.357, 0.323

    refreshed = RefreshGuard(max_rate_change=0.05).apply(approved, learned)

    b1, b2 = refreshed.arms
    assert b1.expected_click_rate == pytest.approx(11.0 / 121.0 + 0.05)
    assert b1.alpha + b1.beta == pytest.approx(171.0)
    assert (b1.impressions, b1.clicks, b1.reward) == (150, 60, 55.5)
    assert b2.expected_click_rate == pytest.approx(1.0 / 21.0 + 0.05)  # a new arm starts from the prior mean
    assert (refreshed.temperature, refreshed.ctr_weight) == (0.3, 2.0)


def test_a_change_within_the_step_passes_unchanged() -> None:
    approved = params(Arm("b1", 100, 10, 11.0, 110.0))
    learned = params(Arm("b1", 110, 12, 13.0, 118.0))

    assert RefreshGuard(0.05).apply(approved, learned).arms == learned.arms


def test_the_first_publish_has_nothing_to_bound_against() -> None:
    learned = params(Arm("b1", 10, 9, 10.0, 21.0))

    assert RefreshGuard(0.05).apply(None, learned) == learned


@pytest.mark.parametrize(
    ("proof", "reason"),
    [(evidence(impressions=500), "only 500 impressions"), (evidence(low=-0.004), "may be worse")],
)
def test_promotion_without_enough_evidence_is_refused_and_publishes_nothing(proof: OpeEvidence, reason: str) -> None:
    store = InMemorySnapshotStore()
    store.publish("shop", params(Arm("b1", 1, 0, 1.0, 21.0)), note="learned")

    with pytest.raises(PromotionRefused, match=reason):
        promote(store, "shop", params(temperature=0.5), proof, PromotionRule(min_impressions=10_000))

    assert [s.version for s in store.snapshots] == [1]


def test_a_promotion_publishes_the_candidate_with_its_evidence_in_the_note() -> None:
    store = InMemorySnapshotStore()
    store.publish("shop", replace(params(), log_positions={("events", 0): 42}), note="learned")

    version = promote(store, "shop", params(temperature=0.5), evidence(), PromotionRule(min_impressions=10_000))

    promoted = store.latest("shop")
    assert promoted is not None
    assert (version, promoted.params.temperature) == (2, 0.5)
    assert promoted.params.log_positions == {("events", 0): 42}
    assert promoted.note.startswith("promoted: OPE dr over 20000 impressions")


def test_a_rollback_republishes_an_earlier_version_under_a_higher_one() -> None:
    store = InMemorySnapshotStore()
    first = params(Arm("b1", 10, 1, 2.0, 29.0))
    store.publish("shop", first, note="v1")
    store.publish("shop", replace(params(Arm("b1", 99, 50, 51.0, 69.0)), log_positions={("events", 0): 99}), "v2")

    version = rollback(store, "shop", to_version=1)

    latest = store.latest("shop")
    assert latest is not None
    assert (version, latest.params.arms) == (3, first.arms)
    assert latest.params.log_positions == {("events", 0): 99}  # the rolled-back events are not learned again
    assert latest.note == "rollback to version 1 (from 2)"


def test_a_rollback_to_an_unknown_version_is_not_found() -> None:
    store = InMemorySnapshotStore()
    store.publish("shop", params(), note="v1")

    with pytest.raises(NotFound):
        rollback(store, "shop", to_version=5)


def with_bandit(base: PolicyParams, bandit: BanditParams, epsilon: float = 0.05) -> PolicyParams:
    return replace(base, exploration="epsilon_mixture", epsilon=epsilon, bandit=bandit)


def test_a_refresh_moves_the_served_bandit_a_bounded_share_of_the_way_and_keeps_its_learning_whole() -> None:
    approved = with_bandit(params(), bandit_params(weights=(0.0, 0.4, 0.0, 0.0, 0.0, 0.2), biases={"b1": 0.1}))
    learned_bandit = bandit_params(weights=(1.0, 0.0, 0.0, 0.0, -0.8, 0.6), biases={"b1": 0.5, "b2": -0.2})
    learned = with_bandit(params(), learned_bandit, epsilon=0.2)

    refreshed = RefreshGuard(max_rate_change=0.05, max_bandit_step=0.25).apply(approved, learned)

    assert refreshed.bandit is not None
    assert refreshed.bandit.weights == pytest.approx((0.25, 0.3, 0.0, 0.0, -0.2, 0.3))
    assert refreshed.bandit.biases == pytest.approx({"b1": 0.2, "b2": -0.05})  # a new bundle starts from 0
    assert refreshed.bandit.learning == learned_bandit.learning
    assert refreshed.epsilon == 0.05  # the approved version's serving settings


def test_a_bandit_published_over_an_approved_policy_of_click_rates_starts_from_zero_weights() -> None:
    approved = params(Arm("b1", 100, 10, 11.0, 110.0), temperature=0.3)
    learned = with_bandit(params(Arm("b1", 100, 10, 11.0, 110.0)), bandit_params(weights=(0.8,) * 6))

    refreshed = RefreshGuard(max_rate_change=0.05, max_bandit_step=0.5).apply(approved, learned)

    assert refreshed.bandit is not None
    assert refreshed.bandit.weights == pytest.approx((0.4,) * 6)
    # The kind changed: the serving settings are the bandit's own (the approved ones were for softmax).
    assert (refreshed.exploration, refreshed.epsilon, refreshed.temperature) == ("epsilon_mixture", 0.05, 0.1)


def test_the_first_bandit_publish_has_nothing_to_bound_against() -> None:
    learned = with_bandit(params(), bandit_params())

    assert RefreshGuard(0.05, max_bandit_step=0.25).apply(None, learned) == learned


@pytest.mark.parametrize("step", [0.0, 1.5])
def test_a_bandit_step_outside_zero_to_one_is_refused(step: float) -> None:
    with pytest.raises(ValueError, match="max_bandit_step"):
        RefreshGuard(0.05, max_bandit_step=step)


def test_a_rollback_republishes_an_earlier_bandit_as_it_was_with_the_latest_learning_positions() -> None:
    store = InMemorySnapshotStore()
    first = with_bandit(params(), bandit_params(weights=(0.1,) * 6, closed_through=EVENT_TIME))
    store.publish("shop", first, note="v1")
    later = EVENT_TIME + timedelta(hours=1)
    store.publish(
        "shop",
        replace(
            with_bandit(params(), bandit_params(weights=(0.9,) * 6, closed_through=later)),
            log_positions={("events", 0): 99},
        ),
        "v2",
    )

    rollback(store, "shop", to_version=1)

    latest = store.latest("shop")
    assert latest is not None
    assert first.bandit is not None
    assert latest.params.bandit == replace(first.bandit, closed_through=later)
    assert latest.params.log_positions == {("events", 0): 99}
