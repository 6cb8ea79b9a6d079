"""Specification of serving a contextual bandit: which list it chooses from the ranker's candidates and
the shopper's own feedback, the propensities and features each shown bundle logs, and how the ranker
reads a bandit from a policy snapshot."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from bundlewise.policy.v1 import policy_pb2

from services.ranker import domain
from services.ranker.domain import BundleInfo, ItemInfo, LinearBandit, PolicyParams, UserSignals
from services.ranker.policy_client import params_from_snapshot
from services.ranker.recommender import Recommender
from services.ranker.shadow_policy import load_shadow_policy
from shared.bandit_features import FEATURES, candidate_features, examination_prior
from shared.settings import SettingsError
from tests.unit.ranker.in_memory_shop import InMemoryShop

# The ranker's candidates, best first, and what the shopper did with them.
SCORED = [(f"kit-{c}", 10.0 - n) for n, c in enumerate("abcdefgh")]
PURCHASES = {bundle_id: 3 for bundle_id, _ in SCORED}
NO_FEEDBACK = UserSignals((), frozenset(), ())
INDEX = {name: n for n, name in enumerate(FEATURES)}


def bandit_policy(epsilon: float = 0.0, bias: dict[str, float] | None = None, **weights: float) -> PolicyParams:
    vector = [0.0] * len(FEATURES)
    for name, weight in weights.items():
        vector[INDEX[name]] = weight
    return PolicyParams(
        version=3,
        temperature=0.0,
        ctr_weight=0.0,
        exploration="epsilon_mixture",
        epsilon=epsilon,
        bandit=LinearBandit(tuple(vector), bias or {}),
    )


def shown(chosen: Sequence[domain.Chosen]) -> list[str]:
    return [c.bundle_id for c in chosen]


def test_an_untrained_bandit_shows_the_rankers_order() -> None:
    chosen = domain.choose_by_bandit(SCORED, 3, bandit_policy(), PURCHASES, NO_FEEDBACK, seed="s")

    assert shown(chosen) == ["kit-a", "kit-b", "kit-c"]
    assert [c.propensity for c in chosen] == [1.0, 1.0, 1.0]


def test_a_bandit_that_learned_ignored_bundles_lose_appeal_rotates_what_the_shopper_kept_ignoring() -> None:
    # The shopper was shown kit-a at the top three times and never clicked it.
    ignored = UserSignals((), frozenset(), (), bundle_looks={"kit-a": 3 * examination_prior(0)})
    policy = bandit_policy(ranker_reciprocal_rank=0.3, shopper_looks=-0.5)

    assert shown(domain.choose_by_bandit(SCORED, 3, policy, PURCHASES, NO_FEEDBACK, seed="s")) == [
        "kit-a",
        "kit-b",
        "kit-c",
    ]
    assert shown(domain.choose_by_bandit(SCORED, 3, policy, PURCHASES, ignored, seed="s")) == [
        "kit-b",
        "kit-c",
        "kit-d",
    ]


def test_a_bundles_own_term_lifts_it_above_better_ranked_ones() -> None:
    policy = bandit_policy(ranker_reciprocal_rank=0.1, bias={"kit-e": 0.2})

    assert shown(domain.choose_by_bandit(SCORED, 2, policy, PURCHASES, NO_FEEDBACK, seed="s")) == ["kit-e", "kit-a"]


def test_each_shown_bundle_logs_the_features_it_was_chosen_with() -> None:
    signals = UserSignals((), frozenset(), (), bundle_looks={"kit-b": 1.5}, clicked_bundle_ids=frozenset({"kit-c"}))

    chosen = domain.choose_by_bandit(SCORED, 3, bandit_policy(), PURCHASES, signals, seed="s")

    pool = SCORED[:8]  # the best 3k = 9 candidates, of which there are 8
    features = candidate_features(pool, PURCHASES, {"kit-b": 1.5}, {"kit-c"})
    expected = dict(zip([b for b, _ in pool], features, strict=True))
    assert [c.policy_features for c in chosen] == [expected[b] for b in shown(chosen)]
    assert chosen[1].policy_features[INDEX["shopper_looks"]] == pytest.approx(0.9162907)  # log(1 + 1.5)
    assert chosen[2].policy_features[INDEX["shopper_clicked_before"]] == 1.0


def test_the_logged_propensities_are_the_epsilon_mixtures_exact_marginals() -> None:
    policy = bandit_policy(epsilon=0.2, ranker_score=1.0)
    draws = 4000
    at_top: Counter[str] = Counter()
    logged: dict[str, float] = {}
    for n in range(draws):
        first = domain.choose_by_bandit(SCORED, 2, policy, PURCHASES, NO_FEEDBACK, seed=f"r{n}")[0]
        at_top[first.bundle_id] += 1
        logged[first.bundle_id] = first.propensity

    # The pool is the best 3k = 6 candidates: kit-a is greedy at the top, kit-f never is.
    assert logged["kit-a"] == pytest.approx(0.8 + 0.2 / 6)
    assert logged["kit-f"] == pytest.approx(0.2 / 6)
    assert set(logged) == {"kit-a", "kit-b", "kit-c", "kit-d", "kit-e", "kit-f"}
    for bundle_id, propensity in logged.items():
        assert at_top[bundle_id] / draws == pytest.approx(propensity, abs=0.02)


def snapshot(names: Sequence[str], weights: Sequence[float]) -> policy_pb2.PolicySnapshot:
    return policy_pb2.PolicySnapshot(
        catalog_id="garden",
        version=9,
        name="contextual_bandit",
        epsilon=0.05,
        exploration=policy_pb2.EXPLORATION_EPSILON_MIXTURE,
        arms=[
            policy_pb2.BundleArm(bundle_id="kit-a", alpha=2.0, beta=9.0, bandit_bias=0.04),
            policy_pb2.BundleArm(bundle_id="kit-b", alpha=1.0, beta=20.0),
        ],
        feature_names=names,
        feature_weights=weights,
    )


def test_a_bandit_snapshot_over_the_rankers_features_is_served() -> None:
    params = params_from_snapshot(snapshot(FEATURES, [0.1, 0.2, 0.0, 0.3, -0.1, 0.5]))

    assert params.bandit == LinearBandit((0.1, 0.2, 0.0, 0.3, -0.1, 0.5), {"kit-a": 0.04})
    assert (params.exploration, params.epsilon, params.version) == ("epsilon_mixture", 0.05, 9)


def test_a_bandit_over_other_features_is_not_served_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        params = params_from_snapshot(snapshot([*FEATURES[:-1], "time_of_day"], [0.1] * len(FEATURES)))

    assert params.bandit is None
    assert params.arms == {"kit-a": (2.0, 9.0), "kit-b": (1.0, 20.0)}
    assert "time_of_day" in caplog.text
    assert "serving its arms' click rates instead" in caplog.text


def test_a_snapshot_without_features_is_the_click_rate_policy() -> None:
    assert params_from_snapshot(snapshot([], [])).bandit is None


# --- through the recommender ------------------------------------------------------------------------


BUNDLES = {b: BundleInfo(b, f"Kit {b}", (f"g{n}",), 20.0, None, False, 3) for n, (b, _) in enumerate(SCORED)}
ITEMS = {f"g{n}": ItemInfo(f"g{n}", f"Garden thing {n}", 10.0, "", False) for n in range(len(SCORED))}


def seen_it_all() -> InMemoryShop:
    """A shopper who looked at every kit's item (g0 most recently) and keeps being shown kit-a."""
    return InMemoryShop(BUNDLES, ITEMS, UserSignals(tuple(ITEMS), frozenset(), (), bundle_looks={"kit-a": 4.0}))


class Fixed:
    def __init__(self, params: PolicyParams) -> None:
        self.params = params

    def current(self, catalog_id: str) -> PolicyParams:
        return self.params


def test_the_recommender_serves_the_bandits_list_and_returns_each_bundles_features() -> None:
    policy = bandit_policy(ranker_reciprocal_rank=0.3, shopper_looks=-0.5)

    answer = Recommender(seen_it_all(), Fixed(policy)).recommend("garden", "shopper-1", 3, request_id="r1")

    assert [r.bundle.bundle_id for r in answer.bundles] == ["kit-b", "kit-c", "kit-d"]
    assert answer.policy_version == 3
    assert all(len(r.policy_features) == len(FEATURES) for r in answer.bundles)


def test_under_the_click_rate_policy_no_features_are_returned() -> None:
    answer = Recommender(seen_it_all(), Fixed(domain.DEFAULT_POLICY)).recommend(
        "garden", "shopper-1", 3, request_id="r"
    )

    assert all(r.policy_features == () for r in answer.bundles)


# --- a bandit candidate in shadow ------------------------------------------------------------------


def bandit_candidate_file(tmp_path: Path, **changes: Any) -> Path:
    """A candidate in the promotion format (shared/policy_params.py) that is a contextual bandit."""
    document: dict[str, Any] = {
        "temperature": 0.0,
        "ctr_weight": 0.0,
        "arms": {"kit-a": [1.0, 20.0]},
        "exploration": "epsilon_mixture",
        "epsilon": 0.1,
        "bandit": {
            "feature_names": list(FEATURES),
            "feature_weights": [0.0, 0.0, 0.0, 0.3, -0.5, 0.0],
            "bundle_bias": {"kit-e": 0.4},
            "state": {"ignored": "by serving"},
        },
    }
    document.update(changes)
    path = tmp_path / "bandit-candidate.json"
    path.write_text(json.dumps(document))
    return path


def test_a_bandit_candidate_file_becomes_a_bandit_in_shadow(tmp_path: Path) -> None:
    shadow = load_shadow_policy(bandit_candidate_file(tmp_path), "garden", "rotate:v1")

    assert shadow.params.bandit == LinearBandit((0.0, 0.0, 0.0, 0.3, -0.5, 0.0), {"kit-e": 0.4})
    assert (shadow.params.exploration, shadow.params.epsilon) == ("epsilon_mixture", 0.1)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"bandit": {"feature_names": ["intercept", "weather"], "feature_weights": [0.1, 0.2]}},
            "a contextual bandit over features \\['intercept', 'weather'\\], but this ranker computes",
        ),
        ({"exploration": "softmax"}, "a contextual bandit explores by epsilon_mixture"),
        ({"bandit": {"feature_names": list(FEATURES), "feature_weights": [0.1]}}, "1 feature_weights for 6"),
    ],
)
def test_a_bandit_candidate_the_ranker_cannot_serve_stops_it_saying_why(
    tmp_path: Path, changes: dict[str, Any], problem: str
) -> None:
    with pytest.raises(SettingsError, match=problem):
        load_shadow_policy(bandit_candidate_file(tmp_path, **changes), "garden", "rotate:v1")


def test_a_bandit_in_shadow_changes_no_answer_and_reports_its_exact_marginals(tmp_path: Path) -> None:
    served = bandit_policy(ranker_reciprocal_rank=0.3)
    shadow = load_shadow_policy(bandit_candidate_file(tmp_path), "garden", "rotate:v1")
    plain = Recommender(seen_it_all(), Fixed(served)).recommend("garden", "shopper-1", 3, request_id="r1")

    shadowed = Recommender(seen_it_all(), Fixed(served), None, {"garden": shadow}).recommend(
        "garden", "shopper-1", 3, request_id="r1"
    )

    assert [(r.bundle.bundle_id, r.propensity) for r in shadowed.bundles] == [
        (r.bundle.bundle_id, r.propensity) for r in plain.bundles
    ]
    assert shadowed.shadow_policy == "rotate:v1"
    # The candidate's greedy list is e (its bias), b, c, ..., a last (looked at 4 times): of the served
    # a, b, c, only b and c are where it would have put them. M = 8 candidates, ε = 0.1.
    assert [r.shadow_propensity for r in shadowed.bundles] == [
        pytest.approx(0.1 / 8),
        pytest.approx(0.9 + 0.1 / 8),
        pytest.approx(0.9 + 0.1 / 8),
    ]


def test_a_bandit_in_shadow_equal_to_the_served_one_reports_the_served_propensities(tmp_path: Path) -> None:
    document_weights = [0.0, 0.0, 0.0, 0.3, -0.5, 0.0]
    path = bandit_candidate_file(tmp_path, epsilon=0.2)
    shadow = load_shadow_policy(path, "garden", "same:v1")
    served = bandit_policy(epsilon=0.2, bias={"kit-e": 0.4}, **dict(zip(FEATURES, document_weights, strict=True)))
    recommender = Recommender(seen_it_all(), Fixed(served), None, {"garden": shadow})

    for request in range(30):
        answer = recommender.recommend("garden", "shopper-1", 3, request_id=f"r{request}")
        assert [r.shadow_propensity for r in answer.bundles] == [pytest.approx(r.propensity) for r in answer.bundles]
