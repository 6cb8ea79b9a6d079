"""The neural slate policy: exact propensities, bounded exploration, learning from clicks, and a
configuration that refuses what it cannot honour.

The worlds here are small and synthetic: a shopper is attracted to the candidates whose ranker score
is far from the shopper's average, on either side, which a linear score of the ranker's view cannot
rank first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from services.policy.contextual import BanditConfig
from services.policy.neural import NeuralConfig, NeuralSlateLearner
from services.policy.simulator import (
    FixedListPolicy,
    NeuralPolicy,
    RandomPolicy,
    ShopperModel,
    SlatePolicy,
    World,
    candidate_features,
    simulate,
    standard_policies,
)
from shared.bandit_features import FEATURES

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def extremes_world(n_users: int = 200, pool_size: int = 10, slate_size: int = 3, seed: int = 0) -> World:
    """Candidates' ranker scores are standard normal, best first; attraction 0.5 when the standardised
    score is beyond ±1, else 0.02."""
    rng = np.random.default_rng(seed)
    scores = -np.sort(-rng.standard_normal((n_users, pool_size)), axis=1)
    features = candidate_features(scores, np.zeros((n_users, pool_size)))
    attraction = np.where(np.abs(features[:, :, 1]) > 1.0, 0.5, 0.02)
    candidates = np.stack([rng.choice(100, size=pool_size, replace=False) for _ in range(n_users)]).astype(np.int64)
    return World(
        model=ShopperModel(pool_size=pool_size, slate_size=slate_size),
        user_ids=np.arange(n_users, dtype=np.int64),
        candidates=candidates,
        features=features,
        attraction=attraction,
        n_bundles=100,
    )


def one_shopper_many_times(pool_size: int, n: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Features [n, M, d] and bundles [n, M] of the same shopper's candidates repeated ``n`` times."""
    scores = np.linspace(1.0, -1.0, pool_size)[None, :]
    features = np.repeat(candidate_features(scores, np.zeros((1, pool_size))), n, axis=0)
    bundles = np.repeat(np.arange(pool_size, dtype=np.int64)[None, :], n, axis=0)
    return features, bundles


def test_logged_propensities_are_the_frequencies_with_which_bundles_are_shown_at_each_position() -> None:
    pool_size, slate_size, n = 6, 3, 40_000
    learner = NeuralSlateLearner(NeuralConfig(slate_size=slate_size, epsilon=0.3), n_bundles=pool_size)
    features, bundles = one_shopper_many_times(pool_size, n)

    choice = learner.choose(features, bundles, np.random.default_rng(5))

    rows = np.broadcast_to(np.arange(slate_size)[None, :], choice.shown.shape)
    frequency = np.zeros((slate_size, pool_size))
    np.add.at(frequency, (rows, choice.shown), 1.0 / n)
    logged = np.full((slate_size, pool_size), np.nan)
    logged[rows, choice.shown] = choice.propensities
    # Each (position, bundle) logs one probability, and it is what the sampling produced.
    assert np.all((choice.propensities > 0) & (choice.propensities <= 1))
    assert np.allclose(logged[rows, choice.shown], choice.propensities)
    standard_error = np.sqrt(logged * (1 - logged) / n)
    assert np.all(np.abs(frequency - logged) < 4 * standard_error)
    # Every bundle fills each position with probability summing to one.
    np.testing.assert_allclose(logged.sum(axis=1), 1.0)


def test_exploration_is_bounded_by_epsilon() -> None:
    pool_size, slate_size, n = 6, 3, 20_000
    features, bundles = one_shopper_many_times(pool_size, n)
    epsilon = 0.1
    learner = NeuralSlateLearner(NeuralConfig(slate_size=slate_size, epsilon=epsilon), n_bundles=pool_size)

    choice = learner.choose(features, bundles, np.random.default_rng(1))

    off_greedy = ~(choice.shown == choice.greedy).all(axis=1)
    assert off_greedy.mean() <= epsilon + 4 * np.sqrt(epsilon * (1 - epsilon) / n)
    assert choice.propensities.min() == pytest.approx(epsilon / pool_size)
    assert choice.propensities.max() == pytest.approx(1 - epsilon + epsilon / pool_size)


def test_without_exploration_every_impression_shows_the_greedy_list_with_propensity_one() -> None:
    features, bundles = one_shopper_many_times(pool_size=6, n=500)
    learner = NeuralSlateLearner(NeuralConfig(slate_size=3, epsilon=0.0), n_bundles=6)

    choice = learner.choose(features, bundles, np.random.default_rng(2))

    assert (choice.shown == choice.greedy).all()
    assert (choice.propensities == 1.0).all()


def test_learning_from_clicks_beats_random_lists_and_the_ranker_and_stays_below_the_oracle() -> None:
    world = extremes_world()
    m = world.model
    policies: list[SlatePolicy] = [
        NeuralPolicy(world, NeuralConfig(slate_size=m.slate_size)),
        RandomPolicy(world.n_users, m.pool_size, m.slate_size),
        FixedListPolicy("ranker", world.ranker_lists(), m.pool_size),
        FixedListPolicy("oracle", world.oracle_lists(), m.pool_size),
    ]
    runs = {policy.name: simulate(world, policy, impressions=20_000, batch_size=500, seed=3) for policy in policies}

    def late(name: str) -> float:
        """Expected clicks per impression over the second half of the stream, once learned."""
        return float(np.mean(runs[name].batch_expected[20:])) / 500

    assert late("neural") > 1.5 * late("random")
    assert late("neural") > 1.1 * late("ranker")  # the ranker's top is one of the two attractive tails
    assert late("neural") < late("oracle")


def test_learned_examination_starts_at_the_prior_and_stays_within_four_times_of_it() -> None:
    world = extremes_world()
    policy = NeuralPolicy(world, NeuralConfig(slate_size=3))
    prior = 1.0 / np.arange(1.0, 4.0)
    np.testing.assert_allclose(policy.learner.examination(), prior, rtol=1e-6)

    simulate(world, policy, impressions=5_000, batch_size=500, seed=4)

    examination = policy.learner.examination()
    assert examination[0] == 1.0
    assert np.all((examination >= prior / 4 - 1e-6) & (examination <= 1.0))


def test_runs_are_identical_given_the_same_seeds() -> None:
    world = extremes_world()

    first, second = (
        simulate(world, NeuralPolicy(world, NeuralConfig(slate_size=3, seed=9)), 3_000, 500, seed=6) for _ in range(2)
    )

    assert first.batch_expected == second.batch_expected
    assert first.batch_rewards == second.batch_rewards


def test_standard_policies_include_the_neural_policy_only_when_configured() -> None:
    world = extremes_world(n_users=5)
    bandit = BanditConfig(slate_size=3)

    assert [p.name for p in standard_policies(world, bandit)] == ["ranker", "random", "oracle", "contextual_bandit"]
    assert [p.name for p in standard_policies(world, bandit, NeuralConfig(slate_size=3))][-1] == "neural"


def test_the_learner_takes_the_bandits_features_by_default() -> None:
    assert NeuralSlateLearner(NeuralConfig(), n_bundles=3).n_features == len(FEATURES)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epsilon": 0.5}, r"need 0 <= epsilon \(0.5\) <= max_epsilon \(0.3\) <= 1"),
        ({"epsilon": -0.1}, r"need 0 <= epsilon \(-0.1\)"),
        ({"max_epsilon": 1.5, "epsilon": 0.1}, r"max_epsilon \(1.5\) <= 1"),
        ({"hidden": 0}, r"slate_size \(5\) and hidden \(0\) must be at least 1"),
        ({"learning_rate": 0.0}, r"need learning_rate \(0.0\) > 0"),
        ({"bundle_bias_l2": -1.0}, r"bundle_bias_l2 \(-1.0\) >= 0"),
        ({"minibatch": 0}, r"1 <= minibatch \(0\)"),
        ({"replay_capacity": 100, "minibatch": 512}, r"minibatch \(512\) <= replay_capacity \(100\)"),
        ({"steps_per_observe": -1}, r"need steps_per_observe \(-1\) >= 0"),
    ],
)
def test_the_config_refuses_settings_it_cannot_honour(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NeuralConfig(**settings)
