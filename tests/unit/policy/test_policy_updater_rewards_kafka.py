"""Rewards from purchases across a restart of the updater as wired for production, on the real Kafka
and PostgreSQL: the restarted updater reads its join window again from the log."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from services.policy.domain import Arm
from services.policy.wiring import PolicyService
from shared.events import Event
from tests.unit.policy.policy_testkit import click, impression, purchase, wait_for

pytestmark = pytest.mark.integration

Produce = Callable[[list[Event | bytes]], None]
WEIGHTS = {"policy_click_weight": 0.25, "policy_purchase_weight": 0.25, "policy_revenue_weight": 0.0625}


def outcomes(kind: str) -> float:
    return REGISTRY.get_sample_value("bundlewise_policy_outcomes_total", {"kind": kind}) or 0.0


def wait_for_arms(service: PolicyService, expected: tuple[Arm, ...]) -> None:
    def arms() -> tuple[Arm, ...]:
        snapshot = service.store.latest("shop")
        return () if snapshot is None else tuple(snapshot.params.arms)

    assert wait_for(arms, lambda found: found == expected) == expected


def test_a_purchase_after_a_restart_is_credited_once_to_the_impression_shown_before_it(
    start_service: Callable[..., PolicyService], produce: Produce
) -> None:
    first = start_service(**WEIGHTS)
    produce([impression("shop", "imp-1", ["b1", "b2"]), click("shop", "imp-1", "b1")])
    wait_for_arms(
        first,
        (
            Arm("b1", impressions=1, clicks=1, alpha=1.25, beta=20.75, reward=0.25),
            Arm("b2", impressions=1, clicks=0, alpha=1.0, beta=21.0),
        ),
    )
    first.close()
    before = {kind: outcomes(kind) for kind in ("rejoined", "duplicate", "purchase", "orphan")}

    second = start_service(**WEIGHTS)
    paid = purchase("shop", "imp-1", "b1").model_copy(update={"revenue": 4.0})  # 0.25 + 0.0625 × 4
    produce([click("shop", "imp-1", "b1"), paid])
    wait_for_arms(
        second,
        (
            Arm("b1", impressions=1, clicks=1, alpha=1.75, beta=20.25, reward=0.75),
            Arm("b2", impressions=1, clicks=0, alpha=1.0, beta=21.0),
        ),
    )
    second.close()

    # The second updater read the first one's two events again into its join, learned nothing from
    # them, took the repeated click for a duplicate and credited the purchase.
    assert {kind: outcomes(kind) - value for kind, value in before.items()} == {
        "rejoined": 2,
        "duplicate": 1,
        "purchase": 1,
        "orphan": 0,
    }
