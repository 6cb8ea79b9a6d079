"""BetaArms: the click-rate posterior per bundle, its deduplication and its snapshots."""

from __future__ import annotations

import pytest

from services.policy.domain import Arm, Observation, PolicyParams, RecentKeys
from tests.unit.policy.policy_testkit import learner


def test_alpha_adds_clicks_and_beta_adds_impressions_without_a_click() -> None:
    arms = learner(prior_alpha=1.0, prior_beta=20.0)
    for impression_id in ("i1", "i2", "i3"):
        arms.observe_impression("shop", impression_id, "b1")
    arms.credit("shop", "b1", 1.0, clicks=1)

    assert arms.snapshot("shop").arms == (Arm("b1", impressions=3, clicks=1, alpha=2.0, beta=22.0),)


def test_snapshot_carries_the_configured_exploration_settings_and_prior() -> None:
    params = learner(temperature=0.3, ctr_weight=2.5, prior_alpha=2.0, prior_beta=8.0).snapshot("shop")

    assert params == PolicyParams(temperature=0.3, ctr_weight=2.5, prior_alpha=2.0, prior_beta=8.0, arms=())


def test_more_clicks_than_impressions_leave_beta_at_the_prior() -> None:
    arms = learner(prior_alpha=1.0, prior_beta=20.0)
    arms.observe_impression("shop", "i1", "b1")
    arms.credit("shop", "b1", 1.0, clicks=1)
    arms.credit("shop", "b1", 1.0, clicks=1)

    assert arms.snapshot("shop").arms == (Arm("b1", impressions=1, clicks=2, alpha=3.0, beta=20.0),)


def test_expected_click_rate_is_the_beta_mean() -> None:
    assert Arm("b1", impressions=3, clicks=1, alpha=2.0, beta=6.0).expected_click_rate == 0.25


def test_a_repeated_impression_of_a_bundle_counts_once() -> None:
    arms = learner()

    assert arms.observe_impression("shop", "i1", "b1") is Observation.COUNTED
    assert arms.observe_impression("shop", "i1", "b1") is Observation.DUPLICATE
    assert arms.snapshot("shop").arms[0].impressions == 1


def test_the_same_impression_id_in_another_catalog_or_of_another_bundle_counts() -> None:
    arms = learner()
    arms.observe_impression("shop", "i1", "b1")

    assert arms.observe_impression("shop", "i1", "b2") is Observation.COUNTED
    assert arms.observe_impression("other-shop", "i1", "b1") is Observation.COUNTED


def test_duplicates_are_recognised_only_within_the_dedup_window() -> None:
    arms = learner(dedup_window=2)
    arms.observe_impression("shop", "i1", "b1")
    arms.observe_impression("shop", "i2", "b1")
    arms.observe_impression("shop", "i3", "b1")  # forgets (i1, b1), the oldest

    assert arms.observe_impression("shop", "i3", "b1") is Observation.DUPLICATE
    assert arms.observe_impression("shop", "i1", "b1") is Observation.COUNTED
    assert arms.snapshot("shop").arms[0].impressions == 4


def test_recent_keys_forget_the_oldest_key_first() -> None:
    keys = RecentKeys(capacity=2)
    assert [keys.add("a"), keys.add("b"), keys.add("a"), keys.add("c"), keys.add("b"), keys.add("a")] == [
        True,
        True,
        False,
        True,
        False,
        True,
    ]


def test_bundles_beyond_max_arms_are_not_learned_but_known_ones_still_are() -> None:
    arms = learner(max_arms=2)
    arms.observe_impression("shop", "i1", "b1")
    arms.observe_impression("shop", "i1", "b2")

    assert arms.observe_impression("shop", "i1", "b3") is Observation.OVER_ARM_LIMIT
    assert arms.credit("shop", "b3", 1.0, clicks=1) is Observation.OVER_ARM_LIMIT
    assert arms.credit("shop", "b1", 1.0, clicks=1) is Observation.COUNTED
    assert arms.observe_impression("other-shop", "i1", "b3") is Observation.COUNTED
    assert [(a.bundle_id, a.impressions, a.clicks) for a in arms.snapshot("shop").arms] == [
        ("b1", 1, 1),
        ("b2", 1, 0),
    ]


def test_arms_are_sorted_by_bundle_id_and_catalogs_are_listed() -> None:
    arms = learner()
    for bundle in ("b3", "b1", "b2"):
        arms.observe_impression("shop", "i1", bundle)
    arms.observe_impression("another", "i1", "b9")

    assert [a.bundle_id for a in arms.snapshot("shop").arms] == ["b1", "b2", "b3"]
    assert arms.catalogs() == ["another", "shop"]
    assert arms.snapshot("unknown").arms == ()


def test_a_restored_learner_has_the_same_snapshot_and_keeps_counting() -> None:
    original = learner()
    for impression_id in ("i1", "i2", "i3"):
        original.observe_impression("shop", impression_id, "b1")
        original.observe_impression("shop", impression_id, "b2")
    original.credit("shop", "b1", 1.0, clicks=1)
    # b3 clicked more often than shown: only raw counts make the round trip exact.
    original.credit("shop", "b3", 1.0, clicks=1)
    published = original.snapshot("shop")

    restored = learner()
    restored.load("shop", published)
    assert restored.snapshot("shop") == published

    restored.observe_impression("shop", "i4", "b3")
    restored.credit("shop", "b1", 1.0, clicks=1)
    assert [(a.bundle_id, a.impressions, a.clicks, a.alpha, a.beta) for a in restored.snapshot("shop").arms] == [
        ("b1", 3, 2, 3.0, 21.0),
        ("b2", 3, 0, 1.0, 23.0),
        ("b3", 1, 1, 2.0, 20.0),
    ]


def test_loading_applies_this_learners_prior_to_the_restored_counts() -> None:
    original = learner(prior_alpha=1.0, prior_beta=20.0)
    original.observe_impression("shop", "i1", "b1")
    original.observe_impression("shop", "i2", "b1")
    original.credit("shop", "b1", 1.0, clicks=1)

    restored = learner(prior_alpha=0.5, prior_beta=5.0)
    restored.load("shop", original.snapshot("shop"))

    assert restored.snapshot("shop").arms == (Arm("b1", impressions=2, clicks=1, alpha=1.5, beta=6.0),)


@pytest.mark.parametrize(("prior_alpha", "prior_beta"), [(0.0, 1.0), (1.0, -1.0)])
def test_a_non_positive_prior_is_refused(prior_alpha: float, prior_beta: float) -> None:
    with pytest.raises(ValueError, match="prior must be positive"):
        learner(prior_alpha=prior_alpha, prior_beta=prior_beta)


def test_a_credit_adds_its_reward_to_alpha_and_takes_it_from_beta() -> None:
    arms = learner(prior_alpha=1.0, prior_beta=20.0)
    arms.observe_impression("shop", "i1", "b1")
    arms.observe_impression("shop", "i2", "b1")

    assert arms.credit("shop", "b1", 0.25, clicks=1) is Observation.COUNTED
    assert arms.credit("shop", "b1", 0.5) is Observation.COUNTED

    assert arms.snapshot("shop").arms == (Arm("b1", impressions=2, clicks=1, alpha=1.75, beta=21.25, reward=0.75),)


def test_a_credit_outside_one_success_is_refused() -> None:
    with pytest.raises(ValueError, match=r"reward in \[0, 1\]"):
        learner().credit("shop", "b1", 1.5)


def test_an_arm_learned_from_clicks_alone_carries_no_separate_reward() -> None:
    arms = learner()
    arms.observe_impression("shop", "i1", "b1")
    arms.credit("shop", "b1", 1.0, clicks=1)

    [arm] = arms.snapshot("shop").arms
    assert (arm.reward, arm.learned_reward) == (None, 1.0)


def test_loading_a_snapshot_keeps_the_rewards_learned() -> None:
    original = learner()
    original.observe_impression("shop", "i1", "b1")
    original.credit("shop", "b1", 0.75, clicks=1)

    restored = learner()
    restored.load("shop", original.snapshot("shop"))

    assert restored.snapshot("shop").arms == original.snapshot("shop").arms
