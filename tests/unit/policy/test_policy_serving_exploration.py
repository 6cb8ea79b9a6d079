"""Serving the policy's exploration in the ranker: the ε-mixture logs exact marginal propensities, and
the setting travels from the policy service's snapshot through the proto to the ranker."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from services.policy.domain import POLICY_NAME, Arm, PolicyParams, Snapshot
from services.policy.servicer import snapshot_to_proto
from services.ranker import domain
from services.ranker.policy_client import params_from_snapshot

SCORED = [("a", 5.0), ("b", 4.0), ("c", 3.0), ("d", 2.0), ("e", 1.0), ("f", 0.5)]


def mixture(epsilon: float) -> domain.PolicyParams:
    return domain.PolicyParams(
        version=3, temperature=0.1, ctr_weight=0.0, exploration="epsilon_mixture", epsilon=epsilon
    )


def test_without_exploration_the_greedy_list_is_shown_with_probability_one() -> None:
    chosen = domain.choose(SCORED, 2, mixture(0.0), seed="s")

    assert [(c.bundle_id, c.propensity) for c in chosen] == [("a", 1.0), ("b", 1.0)]


def test_logged_propensities_are_the_frequencies_of_each_bundle_at_each_position() -> None:
    draws = [domain.choose(SCORED, 2, mixture(0.3), seed=str(i)) for i in range(6000)]
    frequency = Counter((position, c.bundle_id) for chosen in draws for position, c in enumerate(chosen))
    logged = {(position, c.bundle_id): c.propensity for chosen in draws for position, c in enumerate(chosen)}

    # pool = all 6 candidates (3k); greedy a, b
    assert logged[(0, "a")] == pytest.approx(0.7 + 0.3 / 6)
    assert logged[(1, "a")] == pytest.approx(0.3 / 6)
    for key, propensity in logged.items():
        assert frequency[key] / len(draws) == pytest.approx(propensity, abs=0.02)


def test_the_exploration_setting_travels_from_snapshot_to_ranker() -> None:
    params = PolicyParams(
        0.1, 1.0, 1.0, 20.0, (Arm("b1", 10, 2, 3.0, 28.0),), exploration="epsilon_mixture", epsilon=0.05
    )
    snapshot = Snapshot("shop", 7, POLICY_NAME, params, "note", datetime.now(UTC))

    served = params_from_snapshot(snapshot_to_proto(snapshot))

    assert (served.version, served.exploration, served.epsilon) == (7, "epsilon_mixture", 0.05)
    assert served.arms == {"b1": (3.0, 28.0)}
