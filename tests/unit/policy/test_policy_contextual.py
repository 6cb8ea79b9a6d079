"""The hybrid LinUCB bandit: what it learns, how far it explores, and how refreshes are bounded."""

from __future__ import annotations

import numpy as np
import pytest

from services.policy.contextual import BanditConfig, HybridLinUCB
from shared.bandit_features import FEATURES

POOL, SLATE = 8, 3


def features(n: int) -> np.ndarray:
    """[n, POOL, d]: an intercept and nothing else that tells the bundles apart."""
    out = np.zeros((n, POOL, len(FEATURES)))
    out[:, :, 0] = 1.0
    return out


def test_it_learns_which_bundle_shoppers_click_and_puts_it_first() -> None:
    rng = np.random.default_rng(0)
    bandit = HybridLinUCB(BanditConfig(slate_size=SLATE, epsilon=0.1, alpha=0.2), n_bundles=POOL)
    attraction = np.full(POOL, 0.05)
    attraction[5] = 0.6
    examination = 1.0 / (np.arange(SLATE) + 1.0)
    bundles = np.tile(np.arange(POOL), (200, 1))
    for _ in range(30):
        choice = bandit.choose(features(200), bundles, rng)
        clicks = (rng.random(choice.shown.shape) < attraction[choice.shown] * examination).astype(float)
        explored = ~(choice.shown == choice.greedy).all(axis=1)
        bandit.observe(features(200)[:, :SLATE], choice.shown, clicks, explored)

    final = bandit.choose(features(1), bundles[:1], rng)
    assert final.greedy[0, 0] == 5
    mean, _ = bandit.predict(features(1)[0], np.arange(POOL))
    assert mean[5] == pytest.approx(0.6, abs=0.1)


def test_one_click_at_a_deep_position_cannot_dominate_the_model() -> None:
    bandit = HybridLinUCB(BanditConfig(slate_size=5), n_bundles=POOL)
    shown = np.array([[0, 1, 2, 3, 4]])
    bandit.observe(features(1)[:, :5], shown, np.array([[0.0, 0.0, 0.0, 0.0, 1.0]]), np.array([False]))

    mean, _ = bandit.predict(features(1)[0], np.arange(POOL))
    assert 0.0 < mean[4] < 1.0


@pytest.mark.parametrize(("epsilon", "alpha"), [(0.5, 0.1), (0.1, 5.0), (-0.1, 0.1)])
def test_exploration_beyond_its_bounds_is_refused(epsilon: float, alpha: float) -> None:
    with pytest.raises(ValueError, match=r"epsilon|alpha"):
        BanditConfig(epsilon=epsilon, alpha=alpha, max_epsilon=0.3, max_alpha=2.0)


def test_every_shown_position_carries_its_exact_marginal_propensity() -> None:
    bandit = HybridLinUCB(BanditConfig(slate_size=SLATE, epsilon=0.25), n_bundles=POOL)
    choice = bandit.choose(features(500), np.tile(np.arange(POOL), (500, 1)), np.random.default_rng(1))

    expected = 0.75 * (choice.shown == choice.greedy) + 0.25 / POOL
    np.testing.assert_allclose(choice.propensities, expected)


def test_a_bounded_refresh_moves_the_state_part_of_the_way() -> None:
    current = HybridLinUCB(BanditConfig(slate_size=SLATE), n_bundles=POOL)
    learned = HybridLinUCB(BanditConfig(slate_size=SLATE), n_bundles=POOL)
    learned.observe(features(4)[:, :SLATE], np.tile(np.arange(SLATE), (4, 1)), np.ones((4, SLATE)), np.ones(4, bool))

    state = current.bounded_step_towards(learned.state(), max_share=0.25)

    np.testing.assert_allclose(state.shared_gram, 0.25 * learned.state().shared_gram)
    np.testing.assert_allclose(state.bundle_target, 0.25 * learned.state().bundle_target)
