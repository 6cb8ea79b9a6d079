"""The join of bundle outcomes to their impressions: window, late, duplicate and orphan outcomes."""

from __future__ import annotations

from datetime import timedelta

from services.policy.join import Credit, Fate, ImpressionJoin, JoinCounts, RewardWeights, ShownPosition
from shared.events import BundleImpressionEvent, BundleOutcomeEvent, EventType
from tests.unit.policy.policy_testkit import EVENT_TIME, click, impression, purchase

WINDOW = timedelta(minutes=30)


def at(event: BundleImpressionEvent | BundleOutcomeEvent, minutes: float) -> BundleImpressionEvent | BundleOutcomeEvent:
    return event.model_copy(update={"event_time": EVENT_TIME + timedelta(minutes=minutes)})


def test_outcomes_within_the_window_are_credited_to_their_position_with_weights() -> None:
    join = ImpressionJoin(WINDOW, RewardWeights(click=1.0, purchase=2.0, revenue=0.1))
    closed = []
    for event in [
        at(impression("shop", "i1", ["b1", "b2", "b3"]), 0),
        at(click("shop", "i1", "b2"), 1),
        at(purchase("shop", "i1", "b2"), 2),  # revenue 10.0
        at(click("shop", "i1", "b3"), 29),
        at(impression("shop", "i2", ["b1"]), 31),  # moves the watermark past i1's window
    ]:
        closed += join.add(event).closed

    assert [c.impression_id for c in closed] == ["i1"]
    assert closed[0].clicks == (0, 1, 1)
    assert closed[0].purchases == (0, 1, 0)
    assert closed[0].rewards == (0.0, 1.0 + 2.0 + 0.1 * 10.0, 1.0)
    assert join.counts == JoinCounts(impressions=2, outcomes_credited=3)


def test_a_late_outcome_counts_while_its_impression_is_open() -> None:
    join = ImpressionJoin(WINDOW, RewardWeights(), allowed_lateness=timedelta(minutes=10))
    join.add(at(impression("shop", "i1", ["b1"]), 0))
    join.add(at(impression("shop", "i2", ["b1"]), 35))  # watermark 25 min: i1 still open
    join.add(at(click("shop", "i1", "b1"), 5))  # arrives after an event 30 minutes later than itself

    closed = join.flush()

    assert {c.impression_id: c.clicks for c in closed} == {"i1": (1,), "i2": (0,)}
    assert (join.counts.outcomes_credited, join.counts.late_outcomes) == (1, 1)


def test_an_event_stamped_past_the_clock_bound_does_not_close_open_impressions() -> None:
    bound = EVENT_TIME + timedelta(minutes=5)  # the clock plus the skew a storefront may have
    join = ImpressionJoin(WINDOW, RewardWeights(), latest_bound=lambda: bound)
    join.add(at(impression("shop", "i1", ["b1"]), 0))
    closed = join.add(at(impression("shop", "i2", ["b1"]), 60 * 24 * 365)).closed  # a clock a year ahead
    closed += join.add(at(click("shop", "i1", "b1"), 4)).closed

    assert closed == []
    assert join.counts.outcomes_credited == 1


def test_an_outcome_that_arrives_before_its_impression_waits_for_it() -> None:
    join = ImpressionJoin(WINDOW, RewardWeights())
    join.add(at(click("shop", "i1", "b1"), 3))
    join.add(at(impression("shop", "i1", ["b1"]), 2))

    [closed] = join.flush()

    assert closed.clicks == (1,)
    assert join.counts.orphans == 0


def test_duplicate_outcomes_and_impressions_are_ignored() -> None:
    join = ImpressionJoin(WINDOW, RewardWeights())
    shown = at(impression("shop", "i1", ["b1", "b2"]), 0)
    clicked = at(click("shop", "i1", "b1"), 1)
    join.add(shown)
    join.add(shown)  # the same impression redelivered
    join.add(clicked)
    join.add(clicked)  # the same event redelivered
    join.add(at(click("shop", "i1", "b1"), 2))  # a second click event on the same showing

    [closed] = join.flush()

    assert closed.clicks == (1, 0)
    assert join.counts.duplicate_impressions == 1
    assert join.counts.duplicate_outcomes == 2
    assert join.counts.impressions == 1


def test_orphans_expired_unmatched_and_unattributed_outcomes_are_counted_not_credited() -> None:
    join = ImpressionJoin(WINDOW, RewardWeights())
    join.add(at(impression("shop", "i1", ["b1"]), 0))
    join.add(at(click("shop", "never-shown", "b1"), 1))  # its impression never comes: orphan
    join.add(at(click("shop", "i1", "b9"), 2))  # b9 was not in i1: unmatched
    join.add(at(click("shop", None, "b1"), 3))  # no impression id: unattributed
    join.add(at(click("shop", "i1", "b1"), 31))  # after i1's window (i1 still open: no watermark lag)
    # The watermark passes i1's window: a click for it now finds it closed, another orphan.
    join.add(at(impression("shop", "i2", ["b1"]), 40))
    join.add(at(click("shop", "i1", "b1"), 20))

    closed = join.flush()

    assert {c.impression_id: c.clicks for c in closed} == {"i2": (0,)}
    counts = join.counts
    assert (counts.orphans, counts.unmatched, counts.unattributed, counts.outcomes_credited) == (2, 1, 1, 0)
    assert counts.expired == 1


def test_each_event_is_answered_with_its_fate_and_the_outcomes_it_turned_down() -> None:
    join = ImpressionJoin(WINDOW, RewardWeights())
    shown = at(impression("shop", "i1", ["b1"]), 0)

    verdicts = [
        join.add(shown),
        join.add(at(click("shop", "i1", "b1"), 1)),
        join.add(shown),  # a duplicate impression: not an outcome turned down
        join.add(at(click("shop", "never-shown", "b1"), 2)),
        join.add(at(click("shop", "i2", "b9"), 2)),  # waits for i2, which will not show b9
        join.add(at(impression("shop", "i2", ["b1"]), 1)),  # takes its waiting click: unmatched
        join.add(at(click("shop", None, "b1"), 3)),
        # The watermark (40 min) closes i1 and i2 and orphans the click waiting for "never-shown".
        join.add(at(impression("shop", "i3", ["b1"]), 40)),
        join.add(at(click("shop", "i1", "b1"), 20)),  # i1 has closed
    ]

    assert [(v.fate, v.turned_down) for v in verdicts] == [
        (Fate.OPENED, ()),
        (Fate.CREDITED, ()),
        (Fate.DUPLICATE, ()),
        (Fate.WAITING, ()),
        (Fate.WAITING, ()),
        (Fate.OPENED, (Fate.UNMATCHED,)),
        (Fate.UNATTRIBUTED, (Fate.UNATTRIBUTED,)),
        (Fate.OPENED, (Fate.ORPHAN,)),
        (Fate.ORPHAN, (Fate.ORPHAN,)),
    ]
    assert [[c.impression_id for c in v.closed] for v in verdicts if v.closed] == [["i1", "i2"]]
    assert join.counts == JoinCounts(
        impressions=3, outcomes_credited=1, duplicate_impressions=1, orphans=2, unmatched=1, unattributed=1
    )


def test_each_credit_reports_the_reward_of_its_showing_before_and_after_it() -> None:
    join = ImpressionJoin(WINDOW, RewardWeights(click=0.25, purchase=0.5, revenue=0.125), record_credits=True)
    join.add(at(impression("shop", "i1", ["b1"]), 0))
    join.add(at(impression("shop", "i2", ["b1"]), 3))
    join.add(at(click("shop", "i1", "b1"), 1))  # after i2: late
    join.add(at(purchase("shop", "i1", "b1"), 4))  # revenue 10.0

    assert join.drain_credits() == [
        Credit("shop", "i1", "b1", EventType.BUNDLE_CLICK, reward_before=0.0, reward_after=0.25, late=True),
        Credit("shop", "i1", "b1", EventType.BUNDLE_PURCHASE, reward_before=0.25, reward_after=2.0, late=False),
    ]
    assert join.drain_credits() == []


def test_credits_are_not_kept_unless_asked_for() -> None:
    join = ImpressionJoin(WINDOW, RewardWeights())
    join.add(at(impression("shop", "i1", ["b1"]), 0))
    join.add(at(click("shop", "i1", "b1"), 1))

    assert join.drain_credits() == []


def test_held_from_is_the_oldest_offset_of_an_open_impression_or_waiting_outcome_per_partition() -> None:
    join = ImpressionJoin(WINDOW, RewardWeights())
    join.add(at(impression("shop", "i1", ["b1"]), 0), origin=("p0", 10))
    join.add(at(click("shop", "i2", "b1"), 5), origin=("p1", 3))  # waits for i2
    join.add(at(impression("shop", "i3", ["b1"]), 20), origin=("p0", 11))
    assert join.held_from() == {"p0": 10, "p1": 3}

    join.add(at(impression("shop", "i2", ["b1"]), 4), origin=("p0", 12))  # takes its waiting click
    join.add(at(click("shop", "i3", "b1"), 31), origin=("p1", 4))  # the watermark (31 min) closes i1
    assert join.held_from() == {"p0": 11}


def test_each_shown_position_keeps_the_features_it_was_chosen_with_until_the_impression_closes() -> None:
    features = [[1.0, 1.25, 0.5, 1.0, 0.0, 0.0], None, [1.0, -0.5, 0.125, 1 / 3, 1.1, 1.0]]
    shown = impression("shop", "i1", ["b1", "b2", "b3"], features=features, propensities=[0.96, 0.02, 0.96])
    join = ImpressionJoin(WINDOW, RewardWeights())
    join.add(at(shown, 0), origin=("p0", 41))
    join.add(at(click("shop", "i1", "b3"), 1))

    closed = join.add(at(impression("shop", "i2", ["b1"]), 31)).closed

    assert [c.impression_id for c in closed] == ["i1"]
    assert closed[0].shown == (
        ShownPosition("b1", 0, 0.96, (1.0, 1.25, 0.5, 1.0, 0.0, 0.0)),
        ShownPosition("b2", 1, 0.02, None),
        ShownPosition("b3", 2, 0.96, (1.0, -0.5, 0.125, 1 / 3, 1.1, 1.0)),
    )
    assert closed[0].rewards == (0.0, 0.0, 1.0)
    assert closed[0].origin == ("p0", 41)


def test_an_impression_without_features_closes_with_none_for_each_position() -> None:
    join = ImpressionJoin(WINDOW, RewardWeights())
    join.add(at(impression("shop", "i1", ["b1", "b2"]), 0))

    [closed] = join.flush()

    assert [p.features for p in closed.shown] == [None, None]
    assert closed.origin is None


def test_the_watermark_is_the_latest_event_time_less_the_lateness() -> None:
    join = ImpressionJoin(WINDOW, RewardWeights(), allowed_lateness=timedelta(minutes=10))
    assert join.watermark is None

    join.add(at(impression("shop", "i1", ["b1"]), 30))
    join.add(at(click("shop", "i1", "b1"), 20))

    assert join.watermark == EVENT_TIME + timedelta(minutes=20)
