"""Joins bundle outcomes (clicks, purchases) to the impression that showed the bundle, by impression id,
within a window of event time, and turns them into per-position rewards.

Rules (event time, not arrival order, decides; so a replay joins exactly as live traffic did):

- An impression is *open* from its ``event_time`` until ``event_time + window``. Outcomes of one of its
  bundles with an ``event_time`` in that span are credited to the bundle's position, whenever they
  arrive before the impression closes, including after other impressions' events ("late").
- An impression closes once the *watermark*, the latest event time seen minus ``allowed_lateness``,
  passes its end; it is then emitted as a :class:`JoinedImpression` and forgotten.
- A repeated impression id, or a repeated outcome (same event id, or the same kind of outcome for the
  same impression and bundle), is ignored and counted as a duplicate.
- An outcome that arrives before its impression waits (up to the window) for it; one whose impression
  never comes, or was already closed, is an *orphan*; one for a bundle its impression did not show is
  *unmatched*; one outside the window of its impression is *expired*; one without an impression id is
  *unattributed*. Each is counted in :class:`JoinCounts`, none is credited.

Reward of a position = ``click_weight × clicks + purchase_weight × purchases + revenue_weight ×
revenue`` (each click or purchase counted once per impression and bundle).

Each shown position keeps the contextual bandit's features it was chosen with
(``ShownBundle.policy_features``, see :mod:`shared.bandit_features`), so that the policy learns from the
closed impression exactly what the ranker saw.

:meth:`ImpressionJoin.add` answers each event with a :class:`Verdict`: what became of the event, the
outcomes it turned down, the impressions it closed. Two uses: the OPE command reads the closed
impressions; the live updater reads the verdicts and each credit as it happens
(:meth:`ImpressionJoin.drain_credits`), and asks which log offsets the join still holds
(:meth:`ImpressionJoin.held_from`) so that it can rebuild the join after a restart by reading those
again.
"""

from __future__ import annotations

import heapq
from array import array
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from shared.events import BundleImpressionEvent, BundleOutcomeEvent, EventType, ShownBundle


@dataclass(frozen=True)
class RewardWeights:
    """How clicks, purchases and revenue (in the catalog's currency) add up to one reward."""

    click: float = 1.0
    purchase: float = 0.0
    revenue: float = 0.0


@dataclass(frozen=True)
class Credit:
    """One outcome credited to a shown bundle, with the position's reward before and after it (weighted,
    unclipped; a position's reward only grows)."""

    catalog_id: str
    impression_id: str
    bundle_id: str
    kind: EventType  # BUNDLE_CLICK or BUNDLE_PURCHASE
    reward_before: float
    reward_after: float
    late: bool


# Where an event came from in the log: (partition, offset); the partition is any hashable name.
Origin = tuple[Hashable, int]


@dataclass(frozen=True)
class ShownPosition:
    """One shown bundle; ``features`` are the contextual bandit's features it was chosen with, as the
    impression logged them (None when it logged none)."""

    bundle_id: str
    position: int
    propensity: float
    features: tuple[float, ...] | None = None


@dataclass(frozen=True)
class JoinedImpression:
    """One closed impression with the reward of each shown position (ordered by position); ``origin`` is
    where the impression came from in the log, when the join was told."""

    catalog_id: str
    impression_id: str
    user_id: str
    event_time: datetime
    policy_version: str
    context: dict[str, str]
    shown: tuple[ShownPosition, ...]
    rewards: tuple[float, ...]
    clicks: tuple[int, ...]
    purchases: tuple[int, ...]
    origin: Origin | None = None


@dataclass
class JoinCounts:
    """What became of every event the join was given."""

    impressions: int = 0
    outcomes_credited: int = 0
    late_outcomes: int = 0  # credited, though they arrived after an event later than themselves
    duplicate_impressions: int = 0
    duplicate_outcomes: int = 0
    orphans: int = 0
    unmatched: int = 0
    expired: int = 0
    unattributed: int = 0


class Fate(StrEnum):
    """What became of one event given to the join."""

    OPENED = "opened"  # an impression, open from now on
    CREDITED = "credited"  # an outcome credited to the position of its open impression
    WAITING = "waiting"  # an outcome waiting for its impression
    DUPLICATE = "duplicate"  # an impression or an outcome seen before
    ORPHAN = "orphan"  # an outcome whose impression never came within the window, or had closed
    EXPIRED = "expired"  # an outcome outside the window of its impression
    UNMATCHED = "unmatched"  # an outcome for a bundle its impression did not show
    UNATTRIBUTED = "unattributed"  # an outcome without an impression id


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :meth:`ImpressionJoin.add` did with one event.

    ``fate`` is what became of the event itself. ``turned_down`` is the fate of each outcome the call
    turned down, as :class:`JoinCounts` counts them (duplicate, orphan, expired, unmatched, unattributed;
    a duplicate impression is not an outcome): the event itself, if it is one; outcomes that waited for
    the event's impression; outcomes orphaned as the watermark moved on. ``closed`` are the impressions
    the call closed, in the order their windows ended.
    """

    fate: Fate
    turned_down: tuple[Fate, ...]
    closed: list[JoinedImpression]


# Every shown position's features as float64s one after the other, and each position's number of them
# (-1: none logged). About 8 bytes a value, where a tuple of floats takes about 32.
_PackedFeatures = tuple[bytes, tuple[int, ...]]


def _pack_features(ordered: list[ShownBundle]) -> _PackedFeatures | None:
    if all(shown.policy_features is None for shown in ordered):
        return None
    lengths = tuple(-1 if shown.policy_features is None else len(shown.policy_features) for shown in ordered)
    values = array("d", [value for shown in ordered for value in shown.policy_features or ()])
    return values.tobytes(), lengths


def _unpack_features(packed: _PackedFeatures | None, size: int) -> list[tuple[float, ...] | None]:
    if packed is None:
        return [None] * size
    data, lengths = packed
    values = array("d")
    values.frombytes(data)
    unpacked: list[tuple[float, ...] | None] = []
    start = 0
    for length in lengths:
        if length < 0:
            unpacked.append(None)
        else:
            unpacked.append(tuple(values[start : start + length]))
            start += length
    return unpacked


@dataclass(slots=True)
class _Open:
    """One open impression, kept small: a window may hold hundreds of thousands, and every container
    object here is one more for the garbage collector to scan. The facts are tuples of plain values
    (untracked once a collection has seen them); the tallies are made at the first outcome."""

    catalog_id: str
    impression_id: str
    user_id: str
    event_time: datetime
    ends_at: datetime
    policy_version: str
    context: tuple[tuple[str, str], ...]
    shown: tuple[tuple[str, int, float], ...]  # (bundle id, position, propensity), by position
    # The shown positions' features, packed (see _pack_features); None when none has any.
    features: _PackedFeatures | None
    origin: Origin | None
    tallies: _Tallies | None = None

    def index_of(self, bundle_id: str) -> int | None:
        """The first shown position of ``bundle_id`` (its index in ``shown``)."""
        for index, (shown_id, _, _) in enumerate(self.shown):
            if shown_id == bundle_id:
                return index
        return None


@dataclass(slots=True)
class _Tallies:
    clicks: list[int]
    purchases: list[int]
    revenue: list[float]
    seen_outcomes: set[tuple[str, str]] = field(default_factory=set)


@dataclass(frozen=True)
class _Waiting:
    event: BundleOutcomeEvent
    origin: Origin | None


class ImpressionJoin:
    """The join of the module docstring. Not thread-safe. Memory: the open impressions plus the
    outcomes waiting for theirs, both bounded by the window; ``max_event_ids`` recent outcome event ids
    are remembered for duplicates; with ``record_credits``, the credits until they are drained."""

    def __init__(
        self,
        window: timedelta,
        weights: RewardWeights,
        allowed_lateness: timedelta = timedelta(0),
        max_event_ids: int = 1_000_000,
        record_credits: bool = False,
        latest_bound: Callable[[], datetime] | None = None,
    ) -> None:
        if window <= timedelta(0):
            raise ValueError(f"the join window must be positive, got {window}")
        self.window = window
        self.weights = weights
        self.allowed_lateness = allowed_lateness
        self.counts = JoinCounts()
        self._open: dict[tuple[str, str], _Open] = {}
        self._closing: list[tuple[datetime, tuple[str, str]]] = []  # heap of (end of window, key)
        self._closed_ids: OrderedDict[tuple[str, str], datetime] = OrderedDict()
        self._waiting: dict[tuple[str, str], list[_Waiting]] = {}
        self._waiting_order: list[tuple[datetime, tuple[str, str]]] = []  # heap of (event time, key)
        self._event_ids: OrderedDict[str, None] = OrderedDict()
        self._max_event_ids = max_event_ids
        self._latest: datetime | None = None
        # An event stamped beyond this (a storefront clock running ahead) is joined, but the watermark
        # does not follow it: it would close every open impression early.
        self._latest_bound = latest_bound
        self._record_credits = record_credits
        self._credits: list[Credit] = []
        # Per partition, the offsets of the events the join holds (open impressions, waiting outcomes),
        # in the order they were added: ascending when each partition is added in offset order.
        self._held: dict[Hashable, OrderedDict[int, None]] = {}

    @property
    def open_impressions(self) -> int:
        return len(self._open)

    @property
    def watermark(self) -> datetime | None:
        """The latest event time seen (bounded as ``latest_bound`` says) minus ``allowed_lateness``: every
        impression the join was given whose window ended at or before it is closed (None: no event yet)."""
        return None if self._latest is None else self._latest - self.allowed_lateness

    def add(self, event: BundleImpressionEvent | BundleOutcomeEvent, origin: Origin | None = None) -> Verdict:
        """Takes one event; returns what became of it, with the impressions it closed (by advancing the
        watermark) and the outcomes it turned down.

        ``origin`` (partition, offset) is where the event came from in the log, for :meth:`held_from`;
        events of one partition must then be added in offset order."""
        latest = event.event_time if self._latest_bound is None else min(event.event_time, self._latest_bound())
        if self._latest is None or latest > self._latest:
            self._latest = latest
        turned_down: list[Fate] = []
        if isinstance(event, BundleImpressionEvent):
            fate = self._add_impression(event, origin, turned_down)
        else:
            fate = self._add_outcome(event, origin, turned_down)
        closed = self._advance(self._latest - self.allowed_lateness, turned_down)
        return Verdict(fate, tuple(turned_down), closed)

    def drain_credits(self) -> list[Credit]:
        """The outcomes credited since the last call, in the order they were credited (always empty
        unless the join was made with ``record_credits``)."""
        credits, self._credits = self._credits, []
        return credits

    def held_from(self) -> dict[Hashable, int]:
        """Per partition, the lowest offset among the events the join still holds (open impressions and
        outcomes waiting for theirs); partitions holding none are left out. Adding every event of a
        partition again from there, in order, gives back what the join holds of it."""
        return {partition: next(iter(offsets)) for partition, offsets in self._held.items() if offsets}

    def advance(self, watermark: datetime) -> list[JoinedImpression]:
        """Closes every impression whose window ended at or before ``watermark``; orphans the waiting
        outcomes older than the window."""
        return self._advance(watermark, [])

    def _advance(self, watermark: datetime, turned_down: list[Fate]) -> list[JoinedImpression]:
        closed = []
        while self._closing and self._closing[0][0] <= watermark:
            _, key = heapq.heappop(self._closing)
            state = self._open.pop(key)
            self._release(state.origin)
            self._closed_ids[key] = state.ends_at
            closed.append(self._joined(state))
        while self._waiting_order and self._waiting_order[0][0] + self.window <= watermark:
            moment, key = heapq.heappop(self._waiting_order)
            outcomes = self._waiting.get(key, [])
            expired = [o for o in outcomes if o.event.event_time == moment]
            if expired:
                self._turn_down(Fate.ORPHAN, turned_down)
                self._release(expired[0].origin)
                outcomes.remove(expired[0])
                if not outcomes:
                    del self._waiting[key]
        while self._closed_ids and next(iter(self._closed_ids.values())) + self.window <= watermark:
            self._closed_ids.popitem(last=False)
        return closed

    def flush(self) -> list[JoinedImpression]:
        """Closes everything still open (end of a replay); waiting outcomes become orphans."""
        closed = [self._joined(state) for state in self._open.values()]
        self._open.clear()
        self._closing = []
        self.counts.orphans += sum(len(outcomes) for outcomes in self._waiting.values())
        self._waiting = {}
        self._waiting_order = []
        self._held = {}
        return closed

    def _hold(self, origin: Origin | None) -> None:
        if origin is not None:
            self._held.setdefault(origin[0], OrderedDict())[origin[1]] = None

    def _release(self, origin: Origin | None) -> None:
        if origin is not None:
            self._held.get(origin[0], OrderedDict()).pop(origin[1], None)

    def _turn_down(self, fate: Fate, turned_down: list[Fate]) -> None:
        """Counts an outcome turned down, in :attr:`counts` and in ``turned_down``."""
        counts = self.counts
        if fate is Fate.DUPLICATE:
            counts.duplicate_outcomes += 1
        elif fate is Fate.ORPHAN:
            counts.orphans += 1
        elif fate is Fate.EXPIRED:
            counts.expired += 1
        elif fate is Fate.UNMATCHED:
            counts.unmatched += 1
        elif fate is Fate.UNATTRIBUTED:
            counts.unattributed += 1
        else:
            raise ValueError(f"{fate} is not the fate of an outcome turned down")
        turned_down.append(fate)

    def _add_impression(self, event: BundleImpressionEvent, origin: Origin | None, turned_down: list[Fate]) -> Fate:
        key = (event.catalog_id, event.impression_id)
        if key in self._open or key in self._closed_ids:
            self.counts.duplicate_impressions += 1
            return Fate.DUPLICATE
        ordered = sorted(event.bundles, key=lambda b: b.position)
        state = _Open(
            event.catalog_id,
            event.impression_id,
            event.user_id,
            event.event_time,
            event.event_time + self.window,
            event.policy_version,
            tuple(event.context.items()),
            tuple((b.bundle_id, b.position, b.propensity) for b in ordered),
            _pack_features(ordered),
            origin,
        )
        self._open[key] = state
        self._hold(origin)
        heapq.heappush(self._closing, (state.ends_at, key))
        self.counts.impressions += 1
        for waiting in self._waiting.pop(key, []):
            self._release(waiting.origin)
            self._credit(state, waiting.event, turned_down, late=True)
        return Fate.OPENED

    def _add_outcome(self, event: BundleOutcomeEvent, origin: Origin | None, turned_down: list[Fate]) -> Fate:
        if event.event_id in self._event_ids:
            self._turn_down(Fate.DUPLICATE, turned_down)
            return Fate.DUPLICATE
        self._event_ids[event.event_id] = None
        if len(self._event_ids) > self._max_event_ids:
            self._event_ids.popitem(last=False)
        if event.impression_id is None:
            self._turn_down(Fate.UNATTRIBUTED, turned_down)
            return Fate.UNATTRIBUTED
        key = (event.catalog_id, event.impression_id)
        state = self._open.get(key)
        if state is not None:
            late = self._latest is not None and event.event_time < self._latest
            return self._credit(state, event, turned_down, late=late)
        if key in self._closed_ids:
            self._turn_down(Fate.ORPHAN, turned_down)
            return Fate.ORPHAN
        self._waiting.setdefault(key, []).append(_Waiting(event, origin))
        self._hold(origin)
        heapq.heappush(self._waiting_order, (event.event_time, key))
        return Fate.WAITING

    def _credit(self, state: _Open, outcome: BundleOutcomeEvent, turned_down: list[Fate], late: bool) -> Fate:
        if not state.event_time <= outcome.event_time <= state.ends_at:
            self._turn_down(Fate.EXPIRED, turned_down)
            return Fate.EXPIRED
        index = state.index_of(outcome.bundle_id)
        if index is None:
            self._turn_down(Fate.UNMATCHED, turned_down)
            return Fate.UNMATCHED
        kind = EventType(outcome.type)
        if state.tallies is None:
            size = len(state.shown)
            state.tallies = _Tallies([0] * size, [0] * size, [0.0] * size)
        tallies = state.tallies
        if (kind, outcome.bundle_id) in tallies.seen_outcomes:
            self._turn_down(Fate.DUPLICATE, turned_down)
            return Fate.DUPLICATE
        tallies.seen_outcomes.add((kind, outcome.bundle_id))
        before = self._reward(tallies, index)
        if kind is EventType.BUNDLE_PURCHASE:
            tallies.purchases[index] += 1
            tallies.revenue[index] += outcome.revenue or 0.0
        else:
            tallies.clicks[index] += 1
        self.counts.outcomes_credited += 1
        self.counts.late_outcomes += int(late)
        if self._record_credits:
            after = self._reward(tallies, index)
            self._credits.append(
                Credit(state.catalog_id, state.impression_id, outcome.bundle_id, kind, before, after, late)
            )
        return Fate.CREDITED

    def _reward(self, tallies: _Tallies, index: int) -> float:
        w = self.weights
        return (
            w.click * tallies.clicks[index] + w.purchase * tallies.purchases[index] + w.revenue * tallies.revenue[index]
        )

    def _joined(self, state: _Open) -> JoinedImpression:
        size = len(state.shown)
        tallies = state.tallies or _Tallies([0] * size, [0] * size, [0.0] * size)
        return JoinedImpression(
            catalog_id=state.catalog_id,
            impression_id=state.impression_id,
            user_id=state.user_id,
            event_time=state.event_time,
            policy_version=state.policy_version,
            context=dict(state.context),
            shown=tuple(
                ShownPosition(*shown, features=features)
                for shown, features in zip(state.shown, _unpack_features(state.features, size), strict=True)
            ),
            rewards=tuple(self._reward(tallies, index) for index in range(size)),
            clicks=tuple(tallies.clicks),
            purchases=tuple(tallies.purchases),
            origin=state.origin,
        )
