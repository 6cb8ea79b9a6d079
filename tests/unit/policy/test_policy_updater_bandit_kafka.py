"""The contextual bandit learned by the updater as wired for production, on the real Kafka and
PostgreSQL: from the features logged with impressions, across a restart, and not from impressions
without them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from services.policy.bandit import BanditParams
from services.policy.domain import Snapshot
from services.policy.wiring import PolicyService
from shared.bandit_features import FEATURES
from shared.events import BundleImpressionEvent, BundleOutcomeEvent, Event
from tests.unit.policy.policy_testkit import EVENT_TIME, STAR, Showing, click, impression, shopper_showings, wait_for

pytestmark = pytest.mark.integration

Produce = Callable[[list[Event | bytes]], None]
INDEX = {name: i for i, name in enumerate(FEATURES)}
WINDOW_S, LATENESS_S = 60.0, 2000.0
# An impression closes once an event is stamped WINDOW_S + LATENESS_S after it: CLOSE_S.
CLOSE_S = WINDOW_S + LATENESS_S + 1.0
BANDIT = {
    "policy_kind": "contextual_bandit",
    "policy_join_window_s": WINDOW_S,
    "policy_join_lateness_s": LATENESS_S,
    "policy_bandit_max_step": 1.0,  # serve what was learned, to compare it
}


def at(event: BundleImpressionEvent | BundleOutcomeEvent, seconds: float) -> BundleImpressionEvent | BundleOutcomeEvent:
    return event.model_copy(update={"event_time": EVENT_TIME + timedelta(seconds=seconds)})


def shown(showings: Sequence[Showing], start_s: float = 0.0) -> list[Event | bytes]:
    """Each showing as an impression with its features, and its clicks 10 s later (all of one shopper,
    so on one partition, in order)."""
    events: list[Event | bytes] = []
    for n, showing in enumerate(showings):
        impression_id = f"imp-{start_s:.0f}-{n}"
        logged = impression(
            "shop", impression_id, showing.bundles, features=showing.features, propensities=showing.propensities
        )
        events.append(at(logged, start_s))
        events += [at(click("shop", impression_id, bundle), start_s + 10) for bundle in showing.clicked]
    return events


def tick(seconds: float) -> Event:
    """An outcome of no impression stamped ``seconds`` after EVENT_TIME: it moves the join's watermark."""
    return at(click("shop", f"tick-{seconds:.0f}", "b0"), seconds)


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"bundlewise_policy_{name}", labels) or 0.0


def latest(service: PolicyService) -> Snapshot | None:
    return service.store.latest("shop")


def wait_for_learned_bandit(service: PolicyService) -> Snapshot:
    snapshot = wait_for(
        lambda: latest(service),
        lambda s: s is not None and s.params.bandit is not None and bool(s.params.bandit.biases),
    )
    assert snapshot is not None
    assert snapshot.params.bandit is not None
    return snapshot


def bandit_of(snapshot: Snapshot) -> BanditParams:
    assert snapshot.params.bandit is not None
    return snapshot.params.bandit


def test_the_published_bandit_learns_what_the_shopper_clicks_from_the_features_logged_with_impressions(
    start_service: Callable[..., PolicyService], produce: Produce
) -> None:
    service = start_service(**BANDIT)
    learned_before = counter("bandit_impressions_total", catalog="shop", kind="learned")

    produce([*shown(shopper_showings(200)), tick(CLOSE_S)])
    snapshot = wait_for_learned_bandit(service)

    bandit = bandit_of(snapshot)
    assert counter("bandit_impressions_total", catalog="shop", kind="learned") - learned_before == 200
    assert (snapshot.policy_name, snapshot.params.exploration) == ("hybrid_linucb", "epsilon_mixture")
    assert bandit.feature_names == FEATURES
    assert bandit.weights[INDEX["shopper_clicked_before"]] > 0 > bandit.weights[INDEX["shopper_looks"]]
    assert bandit.biases[STAR] > max(bias for bundle, bias in bandit.biases.items() if bundle != STAR)
    # The click rates learned from the same impressions.
    assert sum(arm.impressions for arm in snapshot.params.arms) == 600


def test_a_restarted_updater_resumes_the_bandit_from_its_snapshot_without_learning_anything_twice(
    start_service: Callable[..., PolicyService], produce: Produce
) -> None:
    first = start_service(**BANDIT)
    # Logged first but stamped later, the keeper stays open: a restart reads the log again from it, so
    # the impressions after it close again in the rebuilt join.
    keeper = at(impression("shop", "keeper", ["b0"]), 1000)
    events = [keeper, *shown(shopper_showings(120)), tick(CLOSE_S)]
    produce(events)
    wait_for_learned_bandit(first)
    first.close()
    before = latest(first)
    assert before is not None
    rejoined = counter("outcomes_total", kind="rejoined")

    second = start_service(**BANDIT)
    produce([at(impression("shop", "after-restart", ["b1"]), CLOSE_S + 1)])
    after = wait_for(lambda: latest(second), lambda s: s is not None and s.version > before.version)

    assert after is not None
    assert counter("outcomes_total", kind="rejoined") - rejoined == len(events)
    assert bandit_of(after).learning == bandit_of(before).learning
    assert bandit_of(after).weights == pytest.approx(bandit_of(before).weights, rel=1e-9, abs=1e-12)
    assert bandit_of(after).biases == pytest.approx(bandit_of(before).biases, rel=1e-9, abs=1e-12)


def test_impressions_without_features_leave_the_bandit_as_it_was_and_are_counted(
    start_service: Callable[..., PolicyService], produce: Produce
) -> None:
    service = start_service(**BANDIT)
    produce([*shown(shopper_showings(30)), tick(CLOSE_S)])
    learned = bandit_of(wait_for_learned_bandit(service))
    without_before = counter("impressions_without_features_total", catalog="shop")

    plain = [at(impression("shop", f"plain-{n}", ["b1", "b2"]), CLOSE_S + 100) for n in range(5)]
    produce([*plain, at(click("shop", "plain-0", "b1"), CLOSE_S + 110), tick(2 * CLOSE_S + 100)])
    counted = wait_for(
        lambda: counter("impressions_without_features_total", catalog="shop") - without_before, lambda n: n == 5
    )
    snapshot = wait_for(
        lambda: latest(service),
        lambda s: s is not None and sum(a.impressions for a in s.params.arms) == 90 + 10,
    )

    assert counted == 5
    assert snapshot is not None
    assert bandit_of(snapshot).learning == learned.learning
    assert {a.bundle_id: a.clicks for a in snapshot.params.arms}["b1"] >= 1  # the click rates learned from them


def test_with_the_click_rates_kind_snapshots_carry_no_bandit_whatever_the_impressions_log(
    start_service: Callable[..., PolicyService], produce: Produce
) -> None:
    service = start_service(policy_kind="click_rates", policy_join_window_s=WINDOW_S, policy_join_lateness_s=LATENESS_S)

    produce([*shown(shopper_showings(10)), tick(CLOSE_S)])
    snapshot = wait_for(
        lambda: latest(service), lambda s: s is not None and sum(a.impressions for a in s.params.arms) == 30
    )

    assert snapshot is not None
    assert (snapshot.policy_name, snapshot.params.bandit, snapshot.params.exploration) == ("beta_ctr", None, "softmax")
