"""The served contextual bandit's learner: what it learns from closed impressions, what it leaves out,
and how its snapshot resumes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from services.policy.bandit import BanditObservation, CatalogBandits
from services.policy.contextual import BanditConfig
from services.policy.join import JoinedImpression, ShownPosition
from shared.bandit_features import FEATURES
from tests.unit.policy.policy_testkit import STAR, shopper_showings

INDEX = {name: i for i, name in enumerate(FEATURES)}
NEUTRAL = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


def closed(
    bundles: Sequence[str],
    rewards: Sequence[float],
    features: Sequence[tuple[float, ...] | None] | None = None,
    propensities: Sequence[float] | None = None,
    catalog: str = "shop",
) -> JoinedImpression:
    shown = tuple(
        ShownPosition(
            bundle,
            position,
            0.96 if propensities is None else propensities[position],
            NEUTRAL if features is None else features[position],
        )
        for position, bundle in enumerate(bundles)
    )
    zeros = (0,) * len(bundles)
    return JoinedImpression(
        catalog, "imp", "u1", datetime(2026, 1, 2, tzinfo=UTC), "", {}, shown, tuple(rewards), zeros, zeros
    )


def bandits(positions: int = 10, max_bundles: int = 100) -> CatalogBandits:
    return CatalogBandits(BanditConfig(slate_size=positions), max_bundles=max_bundles)


def test_it_learns_to_show_bundles_clicked_before_and_to_avoid_those_the_shopper_keeps_ignoring() -> None:
    learner = bandits()
    for showing in shopper_showings(200):
        rewards = [1.0 if bundle in showing.clicked else 0.0 for bundle in showing.bundles]
        assert learner.observe(closed(showing.bundles, rewards, showing.features, showing.propensities)) == "learned"

    bandit = learner.snapshot("shop", closed_through=None)

    assert bandit.feature_names == FEATURES
    assert bandit.weights[INDEX["shopper_clicked_before"]] > 0 > bandit.weights[INDEX["shopper_looks"]]
    assert bandit.biases[STAR] > max(bias for bundle, bias in bandit.biases.items() if bundle != STAR)


def test_an_impression_with_a_shown_bundle_without_all_its_features_is_not_learned_from() -> None:
    learner = bandits()
    before = learner.snapshot("shop", closed_through=None)

    without = learner.observe(closed(["b1", "b2"], [1.0, 0.0], [NEUTRAL, None]))
    too_few = learner.observe(closed(["b1", "b2"], [1.0, 0.0], [NEUTRAL, NEUTRAL[:5]]))

    assert (without, too_few) == (BanditObservation.WITHOUT_FEATURES, BanditObservation.WITHOUT_FEATURES)
    assert learner.snapshot("shop", closed_through=None) == before


def test_only_the_first_positions_are_learned_from_with_rewards_clipped_to_one() -> None:
    learner = bandits(positions=2)
    learner.observe(closed(["b1", "b2", "b3"], [2.5, 0.0, 1.0], propensities=[0.02, 0.02, 0.02]))

    learning = learner.snapshot("shop", closed_through=None).learning

    assert sorted(learning.bundles) == ["b1", "b2"]
    assert learning.bundles["b1"].target == pytest.approx(1.0)  # examination 1 at the top, reward 2.5 → 1
    assert (learning.explored_clicks, learning.explored_shown) == ((1.0, 0.0), (1.0, 1.0))


@pytest.mark.parametrize(
    ("propensities", "uniform"),
    [([0.96, 0.96, 0.96], False), ([0.71, 0.96, 0.96], False), ([0.96, 0.02, 0.96], True), ([0.1, 0.1, 0.1], True)],
)
def test_a_list_is_taken_for_a_uniform_one_when_a_position_logged_a_propensity_below_one_half(
    propensities: list[float], uniform: bool
) -> None:
    learner = bandits(positions=3)
    learner.observe(closed(["b1", "b2", "b3"], [0.0, 0.0, 0.0], propensities=propensities))

    explored_shown = learner.snapshot("shop", closed_through=None).learning.explored_shown
    assert explored_shown == ((1.0,) * 3 if uniform else (0.0,) * 3)


def test_a_catalog_learns_at_most_max_bundles_and_skips_impressions_that_show_more() -> None:
    learner = bandits(max_bundles=3)
    assert learner.observe(closed(["b1", "b2"], [1.0, 0.0])) == "learned"

    assert learner.observe(closed(["b3", "b4"], [1.0, 0.0])) == BanditObservation.OVER_ARM_LIMIT
    assert learner.observe(closed(["b2", "b3"], [0.0, 1.0])) == BanditObservation.LEARNED
    assert sorted(learner.snapshot("shop", closed_through=None).learning.bundles) == ["b1", "b2", "b3"]


def test_impressions_waiting_when_the_catalog_outgrows_its_room_are_all_learned() -> None:
    learner = bandits(max_bundles=1000)
    many = [f"b{n}" for n in range(200)]  # more bundles than a new catalog has room for
    for start in range(0, len(many), 4):
        learner.observe(closed(many[start : start + 4], [1.0, 0.0, 0.0, 0.0]))

    learning = learner.snapshot("shop", closed_through=None).learning

    assert sorted(learning.bundles) == sorted(many)
    clicked = many[::4]
    assert all(learning.bundles[bundle].target == pytest.approx(1.0) for bundle in clicked)
    assert all(learning.bundles[bundle].count > 0 for bundle in many)


def test_catalogs_learn_apart() -> None:
    learner = bandits()
    learner.observe(closed(["b1"], [1.0], catalog="shop"))

    assert learner.snapshot("other", closed_through=None).learning.bundles == {}
    assert list(learner.snapshot("shop", closed_through=None).learning.bundles) == ["b1"]


def test_a_loaded_snapshot_gives_back_the_same_weights_and_biases_and_learns_on_from_there() -> None:
    first = bandits()
    showings = shopper_showings(120)
    for showing in showings[:100]:
        rewards = [1.0 if bundle in showing.clicked else 0.0 for bundle in showing.bundles]
        first.observe(closed(showing.bundles, rewards, showing.features, showing.propensities))
    moment = datetime(2026, 1, 3, tzinfo=UTC)
    published = first.snapshot("shop", closed_through=moment)

    second = bandits()
    second.load("shop", published)
    resumed = second.snapshot("shop", closed_through=moment)

    assert resumed.learning == published.learning
    assert resumed.weights == pytest.approx(published.weights, rel=1e-9, abs=1e-12)
    assert resumed.biases == pytest.approx(published.biases, rel=1e-9, abs=1e-12)
    for showing in showings[100:]:
        rewards = [1.0 if bundle in showing.clicked else 0.0 for bundle in showing.bundles]
        for learner in (first, second):
            learner.observe(closed(showing.bundles, rewards, showing.features, showing.propensities))
    assert second.snapshot("shop", None).weights == pytest.approx(first.snapshot("shop", None).weights, rel=1e-9)


def test_loading_none_forgets_the_catalog() -> None:
    learner = bandits()
    learner.observe(closed(["b1"], [1.0]))

    learner.load("shop", None)

    assert learner.snapshot("shop", closed_through=None).learning.bundles == {}
