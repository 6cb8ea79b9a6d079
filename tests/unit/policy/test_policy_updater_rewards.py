"""The updater's rewards from the join: purchases and revenue, the window, late, orphan and duplicate
outcomes, and restarts that neither lose nor double them (in-memory store and consumer)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from services.policy.domain import Arm, LogPartition
from services.policy.join import RewardWeights
from services.policy.postgres_snapshots import params_from_json, params_to_json
from services.policy.settings import PolicySettings
from services.policy.updater import LogRecord, PolicyUpdater, RewardJoin
from shared.events import BundleImpressionEvent, BundleOutcomeEvent
from tests.unit.policy.policy_testkit import (
    EVENT_TIME,
    KAFKA_BOOTSTRAP,
    POSTGRES_URL,
    FakeConsumer,
    FakeRecord,
    InMemorySnapshotStore,
    click,
    impression,
    learner,
    purchase,
    records,
)

TOPIC = "events"
HOUR_S = 3600.0
WINDOW = timedelta(minutes=30)
CLICK_AND_PURCHASE = RewardWeights(click=0.25, purchase=0.25)

BundleEvent = BundleImpressionEvent | BundleOutcomeEvent


def at(event: BundleEvent, minutes: float) -> BundleEvent:
    return event.model_copy(update={"event_time": EVENT_TIME + timedelta(minutes=minutes)})


def bought(catalog: str, impression_id: str, bundle: str, revenue: float) -> BundleOutcomeEvent:
    return purchase(catalog, impression_id, bundle).model_copy(update={"revenue": revenue})


def outcomes(kind: str) -> float:
    return REGISTRY.get_sample_value("bundlewise_policy_outcomes_total", {"kind": kind}) or 0.0


def late_outcomes() -> float:
    return REGISTRY.get_sample_value("bundlewise_policy_late_outcomes_total") or 0.0


def tally(*kinds: str) -> dict[str, float]:
    return {kind: outcomes(kind) for kind in kinds}


def since(before: dict[str, float]) -> dict[str, float]:
    return {kind: outcomes(kind) - value for kind, value in before.items()}


@dataclass
class LogReplay:
    """A window reader over ``log``: what a restarted updater reads again; remembers what it was asked."""

    log: list[FakeRecord] = field(default_factory=list)
    asked: list[dict[LogPartition, tuple[int, int]]] = field(default_factory=list)

    def __call__(self, ranges: Mapping[LogPartition, tuple[int, int]]) -> Iterator[Sequence[LogRecord]]:
        self.asked.append(dict(ranges))
        for (topic, partition), (start, end) in ranges.items():
            yield [r for r in self.log if (r.topic, r.partition) == (topic, partition) and start <= r.offset < end]


class Run:
    """One life of an updater over a shared store: it reads ``batches``, then is stopped."""

    def __init__(
        self,
        store: InMemorySnapshotStore,
        batches: list[list[FakeRecord]],
        rewards: RewardJoin,
        window_reader: LogReplay | None = None,
    ) -> None:
        self.consumer = FakeConsumer(batches, store.journal)
        self.updater = PolicyUpdater(
            store,
            learner(),
            consumer_factory=lambda: self.consumer,
            publish_every_s=HOUR_S,
            publish_every_outcomes=10**6,
            poll_timeout_ms=10,
            rewards=rewards,
            window_reader=window_reader,
        )

    def until_drained(self) -> None:
        self.updater.start()
        assert self.consumer.drained.wait(10)
        self.updater.stop()


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.updater.stop()


def run(
    runs: list[Run],
    store: InMemorySnapshotStore,
    events: list[Any],
    rewards: RewardJoin,
    first_offset: int = 0,
    window_reader: LogReplay | None = None,
) -> list[FakeRecord]:
    """Runs an updater over ``events`` (consecutive offsets of partition 0) until it has read them all."""
    batch = records(TOPIC, 0, events, first_offset=first_offset)
    runs.append(Run(store, [batch], rewards, window_reader))
    runs[-1].until_drained()
    return batch


def arms(store: InMemorySnapshotStore, catalog: str = "shop") -> tuple[Arm, ...]:
    latest = store.latest(catalog)
    assert latest is not None
    return tuple(latest.params.arms)


def test_a_purchase_and_its_revenue_add_to_the_showing_reward_capped_at_one_success(runs: list[Run]) -> None:
    store = InMemorySnapshotStore()
    before = tally("click", "purchase")
    weights = RewardWeights(click=0.25, purchase=0.5, revenue=1 / 16)

    run(
        runs,
        store,
        [
            impression("shop", "i1", ["b1", "b2", "b3"]),
            click("shop", "i1", "b1"),
            bought("shop", "i1", "b1", revenue=0.0),  # 0.25 + 0.5
            bought("shop", "i1", "b2", revenue=16.0),  # 0.5 + 1.0, capped at 1
        ],
        RewardJoin(weights, WINDOW),
    )

    assert arms(store) == (
        Arm("b1", impressions=1, clicks=1, alpha=1.75, beta=20.25, reward=0.75),
        Arm("b2", impressions=1, clicks=0, alpha=2.0, beta=20.0, reward=1.0),
        Arm("b3", impressions=1, clicks=0, alpha=1.0, beta=21.0),
    )
    assert since(before) == {"click": 1, "purchase": 2}


def test_by_default_a_click_is_one_success_and_a_purchase_adds_nothing(runs: list[Run]) -> None:
    store = InMemorySnapshotStore()

    run(
        runs,
        store,
        [impression("shop", "i1", ["b1", "b2"]), click("shop", "i1", "b1"), purchase("shop", "i1", "b2")],
        RewardJoin(),
    )

    assert arms(store) == (
        Arm("b1", impressions=1, clicks=1, alpha=2.0, beta=20.0),
        Arm("b2", impressions=1, clicks=0, alpha=1.0, beta=21.0),
    )


def test_a_late_outcome_within_the_window_is_credited_and_counted_late(runs: list[Run]) -> None:
    store = InMemorySnapshotStore()
    late_before = late_outcomes()

    run(
        runs,
        store,
        [
            at(impression("shop", "i1", ["b1"]), 0),
            at(impression("shop", "i2", ["b1"]), 35),  # the watermark (25 min) has not closed i1 (30 min)
            at(click("shop", "i1", "b1"), 5),
        ],
        RewardJoin(CLICK_AND_PURCHASE, WINDOW, lateness=timedelta(minutes=10)),
    )

    assert arms(store) == (Arm("b1", impressions=2, clicks=1, alpha=1.25, beta=21.75, reward=0.25),)
    assert late_outcomes() - late_before == 1


def test_outcomes_outside_the_window_or_without_an_open_impression_are_counted_not_learned(runs: list[Run]) -> None:
    store = InMemorySnapshotStore()
    before = tally("click", "purchase", "expired", "orphan", "unmatched")

    run(
        runs,
        store,
        [
            at(impression("shop", "i1", ["b1"]), 0),
            at(click("shop", "i1", "b1"), 31),  # after i1's 30 minutes: expired
            at(click("shop", "never-shown", "b1"), 1),  # waits for an impression that never comes
            at(impression("shop", "i2", ["b1"]), 50),  # watermark 40: closes i1, orphans the waiting click
            at(bought("shop", "i1", "b1", revenue=5.0), 10),  # i1 has closed: orphan
            at(click("shop", "i2", "b9"), 51),  # b9 was not shown in i2
        ],
        RewardJoin(CLICK_AND_PURCHASE, WINDOW, lateness=timedelta(minutes=10)),
    )

    assert arms(store) == (Arm("b1", impressions=2, clicks=0, alpha=1.0, beta=22.0),)
    assert since(before) == {"click": 0, "purchase": 0, "expired": 1, "orphan": 2, "unmatched": 1}


def test_a_redelivered_or_repeated_outcome_counts_once(runs: list[Run]) -> None:
    store = InMemorySnapshotStore()
    clicked = click("shop", "i1", "b1")
    paid = bought("shop", "i1", "b1", revenue=3.0)
    before = tally("click", "purchase", "duplicate")

    run(
        runs,
        store,
        [
            impression("shop", "i1", ["b1"]),
            clicked,
            clicked,  # the same event produced twice (a retried send)
            click("shop", "i1", "b1"),  # a second click on the same showing
            paid,
            bought("shop", "i1", "b1", revenue=3.0),  # a second purchase of the same showing
        ],
        RewardJoin(CLICK_AND_PURCHASE, WINDOW),
    )

    assert arms(store) == (Arm("b1", impressions=1, clicks=1, alpha=1.5, beta=20.5, reward=0.5),)
    assert since(before) == {"click": 1, "purchase": 1, "duplicate": 3}


def test_an_impression_repeated_after_the_join_forgot_it_counts_once_while_among_the_recent_pairs(
    runs: list[Run],
) -> None:
    store = InMemorySnapshotStore()
    shown = at(impression("shop", "i1", ["b1"]), 0)
    before = tally("impression", "duplicate")

    run(
        runs,
        store,
        [
            shown,
            at(impression("shop", "i2", ["b1"]), 100),  # the watermark closes i1 and the join forgets it
            shown,  # the same impression produced again, later: the learner's recent pairs still hold it
        ],
        RewardJoin(CLICK_AND_PURCHASE, WINDOW, lateness=timedelta(0)),
    )

    assert arms(store) == (Arm("b1", impressions=2, clicks=0, alpha=1.0, beta=22.0),)
    assert since(before) == {"impression": 2, "duplicate": 1}


def test_snapshots_record_where_the_join_window_must_be_read_again_from(runs: list[Run]) -> None:
    store = InMemorySnapshotStore()
    rewards = RewardJoin(CLICK_AND_PURCHASE, WINDOW, lateness=timedelta(0))

    shown = [at(impression("shop", "i1", ["b1"]), 0), at(impression("shop", "i2", ["b1"]), 10)]
    log = LogReplay(run(runs, store, shown, rewards))
    first = store.latest("shop")
    run(runs, store, [at(impression("shop", "i3", ["b1"]), 35)], rewards, first_offset=2, window_reader=log)
    second = store.latest("shop")

    assert first is not None
    assert second is not None
    assert first.params.window_positions == {(TOPIC, 0): 0}
    assert second.params.window_positions == {(TOPIC, 0): 1}  # i3 closed i1; i2 is still open


def test_a_restart_neither_loses_nor_doubles_outcomes_of_impressions_shown_before_it(runs: list[Run]) -> None:
    store = InMemorySnapshotStore()
    rewards = RewardJoin(CLICK_AND_PURCHASE, WINDOW)
    log = LogReplay()
    log.log += run(runs, store, [impression("shop", "i1", ["b1", "b2"]), click("shop", "i1", "b1")], rewards)
    assert arms(store)[0] == Arm("b1", impressions=1, clicks=1, alpha=1.25, beta=20.75, reward=0.25)
    before = tally("click", "purchase", "duplicate", "rejoined", "orphan")

    run(
        runs,
        store,
        [
            click("shop", "i1", "b1"),  # the showing's click again: not doubled
            bought("shop", "i1", "b1", revenue=1.0),  # credited to i1, shown before the restart: not lost
            click("shop", "i1", "b2"),
        ],
        rewards,
        first_offset=2,
        window_reader=log,
    )

    assert log.asked == [{(TOPIC, 0): (0, 2)}]
    assert arms(store) == (
        Arm("b1", impressions=1, clicks=1, alpha=1.5, beta=20.5, reward=0.5),
        Arm("b2", impressions=1, clicks=1, alpha=1.25, beta=20.75, reward=0.25),
    )
    assert since(before) == {"click": 1, "purchase": 1, "duplicate": 1, "rejoined": 2, "orphan": 0}


@pytest.mark.parametrize("reads_the_window_again", [True, False], ids=["window-reader", "consumer-only"])
def test_outcomes_re_read_after_a_crash_before_the_commit_are_credited_once(
    runs: list[Run], reads_the_window_again: bool
) -> None:
    store = InMemorySnapshotStore()
    rewards = RewardJoin(CLICK_AND_PURCHASE, WINDOW)
    first_run = run(runs, store, [impression("shop", "i1", ["b1"]), click("shop", "i1", "b1")], rewards)
    before = tally("already_counted", "click", "purchase")

    # The commit was lost: the consumer delivers the first run's records again, then a new purchase.
    again = [*first_run, *records(TOPIC, 0, [bought("shop", "i1", "b1", revenue=1.0)], first_offset=2)]
    runs.append(Run(store, [again], rewards, LogReplay(list(first_run)) if reads_the_window_again else None))
    runs[-1].until_drained()

    assert arms(store) == (Arm("b1", impressions=1, clicks=1, alpha=1.5, beta=20.5, reward=0.5),)
    assert since(before) == {"already_counted": 2, "click": 0, "purchase": 1}


def test_rewards_and_window_positions_survive_the_stored_json() -> None:
    params = replace(
        learner().snapshot("shop"),
        arms=(Arm("b1", 4, 1, alpha=2.5, beta=22.5, reward=1.5), Arm("b2", 2, 1, alpha=2.0, beta=21.0)),
        window_positions={(TOPIC, 0): 3, (TOPIC, 2): 9},
    )

    document = params_to_json(params)

    assert document["counts"] == {"b1": [4, 1, 1.5], "b2": [2, 1]}
    assert document["window_positions"] == {TOPIC: {"0": 3, "2": 9}}
    assert params_from_json(document) == params


def test_reward_settings_default_to_clicks_alone_and_refuse_to_learn_nothing() -> None:
    defaults = PolicySettings(postgres_url=POSTGRES_URL, kafka_bootstrap=KAFKA_BOOTSTRAP)
    assert defaults.policy_reward_weights == RewardWeights(click=1.0, purchase=0.0, revenue=0.0)
    assert (defaults.policy_join_window_s, defaults.policy_join_lateness_s) == (1800.0, 1800.0)

    with pytest.raises(ValidationError, match="BUNDLEWISE_POLICY_CLICK_WEIGHT"):
        PolicySettings(postgres_url=POSTGRES_URL, kafka_bootstrap=KAFKA_BOOTSTRAP, policy_click_weight=0.0)
