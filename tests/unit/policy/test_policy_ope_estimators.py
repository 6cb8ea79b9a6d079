"""Off-policy estimators on hand-computed cases, and the pseudo-inverse factor checked by enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from services.policy.exploration import EpsilonMixture
from services.policy.ope_estimators import (
    LoggedSlates,
    doubly_robust,
    factorised_pi_weights,
    logging_value,
    position_ips,
    pseudo_inverse,
    self_normalised_position_ips,
)


def two_impressions() -> LoggedSlates:
    return LoggedSlates(
        rewards=np.array([[1.0, 0.0], [0.0, 1.0]]),
        logging_propensities=np.array([[0.5, 0.25], [0.5, 0.5]]),
        target_propensities=np.array([[1.0, 0.5], [0.25, 0.25]]),
        shown=np.ones((2, 2), dtype=bool),
        predicted=np.array([[0.5, 0.5], [0.0, 0.0]]),
        target_model_value=np.array([1.0, 0.0]),
    )


def test_position_ips_weighs_each_position_by_its_own_propensity_ratio() -> None:
    estimate = position_ips(two_impressions())

    # impression 0: 1 * 1.0/0.5 = 2; impression 1: 1 * 0.25/0.5 = 0.5
    assert estimate.value == pytest.approx(1.25)
    assert estimate.std_error == pytest.approx(np.std([2.0, 0.5], ddof=1) / np.sqrt(2))
    assert estimate.low == pytest.approx(1.25 - 1.959963984540054 * estimate.std_error)


def test_self_normalised_ips_divides_each_position_by_its_mean_weight() -> None:
    estimate = self_normalised_position_ips(two_impressions())

    # position 0: (2 + 0) / (2 + 0.5); position 1: (0 + 0.5) / (2 + 0.5)
    assert estimate.value == pytest.approx(2.0 / 2.5 + 0.5 / 2.5)


def test_doubly_robust_adds_weighted_residuals_to_the_model_value() -> None:
    estimate = doubly_robust(two_impressions())

    # impression 0: 1 + 2*(1-0.5) + 2*(0-0.5) = 1; impression 1: 0 + 0.5*(0-0) + 0.5*(1-0) = 0.5
    assert estimate.value == pytest.approx(0.75)


def test_logging_value_is_the_mean_observed_reward() -> None:
    assert logging_value(two_impressions()).value == pytest.approx(1.0)


def test_positions_not_shown_carry_no_weight() -> None:
    data = LoggedSlates(
        rewards=np.array([[1.0, 0.0]]),
        logging_propensities=np.array([[0.5, 0.0]]),
        target_propensities=np.array([[0.5, 0.9]]),
        shown=np.array([[True, False]]),
    )

    assert position_ips(data).value == pytest.approx(1.0)
    assert factorised_pi_weights(data).tolist() == [1.0]


def test_a_shown_bundle_without_a_logging_propensity_is_refused() -> None:
    with pytest.raises(ValueError, match="logging propensity"):
        LoggedSlates(
            rewards=np.zeros((1, 1)),
            logging_propensities=np.zeros((1, 1)),
            target_propensities=np.ones((1, 1)),
            shown=np.ones((1, 1), dtype=bool),
        )


@pytest.mark.parametrize(("logging_epsilon", "target_epsilon"), [(0.5, 0.1), (1.0, 0.0), (0.2, 1.0)])
def test_exact_pseudo_inverse_weights_reproduce_the_target_marginals(
    logging_epsilon: float, target_epsilon: float
) -> None:
    """E_logger[(q^T Γ^† 1_s) 1_s] = q: summed over every possible list, exactly."""
    pool, size = 4, 2
    logger = EpsilonMixture(logging_epsilon, pool, size)
    greedy = np.array([[2, 0]])
    target_greedy = np.array([[1, 3]])
    target = EpsilonMixture(target_epsilon, pool, size).marginals(target_greedy)
    expected = np.zeros((size, pool))
    for slate in itertools.permutations(range(pool), size):
        shown = np.array([slate])
        probability = (1 - logging_epsilon) * (slate == tuple(greedy[0])) + logging_epsilon / (pool * (pool - 1))
        weight = logger.pi_weights(greedy, shown, target)[0]
        expected[np.arange(size), list(slate)] += probability * weight

    np.testing.assert_allclose(expected, target[0], atol=1e-9)


def test_pseudo_inverse_uses_the_total_reward_of_the_list() -> None:
    data = LoggedSlates(
        rewards=np.array([[1.0, 1.0], [0.0, 0.0]]),
        logging_propensities=np.full((2, 2), 0.5),
        target_propensities=np.full((2, 2), 0.5),
        shown=np.ones((2, 2), dtype=bool),
        pi_weights=np.array([1.5, 0.5]),
    )

    assert pseudo_inverse(data).value == pytest.approx((2.0 * 1.5 + 0.0) / 2)


def test_the_mixture_logs_exact_marginal_propensities() -> None:
    mixture = EpsilonMixture(0.2, pool_size=5, slate_size=2)
    greedy = np.array([[3, 1]])
    rng = np.random.default_rng(0)
    draws = mixture.sample(np.repeat(greedy, 200_000, axis=0), rng)

    frequency = np.stack([np.bincount(draws[:, k], minlength=5) / draws.shape[0] for k in range(2)])

    np.testing.assert_allclose(frequency, mixture.marginals(greedy)[0], atol=0.005)
    assert mixture.propensities(greedy, np.array([[3, 0]])).tolist() == [[0.8 + 0.04, 0.04]]
