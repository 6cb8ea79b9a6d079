"""The learning loop: bundle events from Kafka into :class:`BetaArms`, snapshots into the store.

Exactly once in effect across restarts, without distributed transactions:

1. On start the learner is loaded from each catalog's latest snapshot, then the consumer resumes from
   the group's committed offsets.
2. Every snapshot records ``log_positions``: per partition, the first offset not counted in it.
3. Offsets are committed only after every catalog changed by the events below them is published.

A crash after publishing and before the commit re-reads events a snapshot already counted; the events
of a catalog below its snapshot's positions are skipped, so they do not count twice. A crash before
publishing loses nothing either: those events were not committed and are read again.

Run one updater per namespace: each one learns from every partition of the topic, and the positions
assume that this process read all of them.

A consumer that stalls (out of its group, or not consuming while events wait; see
:mod:`shared.kafka_stall`) is closed and replaced. The new one reads on from the committed offsets;
what this process already learned from is skipped, as after a rebalance.

Rewards come from the join of outcomes to impressions (:mod:`services.policy.join`), one window of
event time after each impression:

- Each outcome is credited *when it arrives*, if its impression is known and open and the outcome falls
  in its window; it is not held until the window closes. So the arms always count everything below the
  positions read, and the offsets can be committed after each publish as before; holding credits until
  windows close would hold every commit back by a window.
- A showing's reward is ``click_weight × click + purchase_weight × purchase + revenue_weight ×
  revenue`` (one click and one purchase per impression and bundle), capped at 1: the Beta arm counts
  successes out of showings, and a capped reward is a share of one success, so the posterior mean stays
  a rate in [0, 1] that the guard rail can bound. Capping rather than scaling keeps a click at exactly
  one success by default (click weight 1): learning from clicks alone is what it was.
- What the join holds (open impressions, outcomes waiting for theirs) is not in the snapshots: it is
  re-derived. Each snapshot also records ``window_positions``, per partition the lowest offset the join
  still held when it was published. On start, the updater reads the log again from there up to the
  snapshots' positions and gives those events to the join without learning from them (they are already
  counted), so an outcome after a restart still finds its impression, and a duplicate of one credited
  before it is still recognised. Events below a catalog's snapshot positions that the group consumer
  delivers again go to the join the same way.

With ``BUNDLEWISE_POLICY_KIND=contextual_bandit`` a contextual bandit (:mod:`services.policy.bandit`)
learns beside the arms, from each impression *when its window closes* (then its rewards are final), and
every snapshot carries it. Its state is in the snapshots, with the join's watermark at publish
(``closed_through``): an impression read below a catalog's snapshot positions whose window ended by then
is in that snapshot's state. Rebuilding the join on start closes such impressions again; they are not
learned twice. An impression still open at the publish closes later and is learned then.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from services.policy.bandit import BanditObservation, CatalogBandits
from services.policy.domain import BetaArms, LogPartition, Observation, PolicyParams
from services.policy.join import Credit, Fate, ImpressionJoin, JoinedImpression, RewardWeights
from services.policy.metrics import (
    BANDIT_IMPRESSIONS,
    CONSUMER_REPLACEMENTS,
    GROUP_MEMBER,
    IMPRESSIONS_WITHOUT_FEATURES,
    LATE_OUTCOMES,
    OUTCOMES,
    PUBLISH_DURATION,
    PUBLISH_FAILURES,
    PUBLISHED_VERSION,
    OutcomeKind,
)
from services.policy.ports import SnapshotStore
from services.policy.rollout import RefreshGuard
from shared.errors import Unavailable
from shared.events import BundleImpressionEvent, BundleOutcomeEvent, EventType, InvalidEvent, parse_event
from shared.kafka_stall import ConsumerStallCheck, GroupMembership, PositionedConsumer, stall_reason

log = logging.getLogger(__name__)

_OBSERVATION_KIND = {
    Observation.DUPLICATE: OutcomeKind.DUPLICATE,
    Observation.OVER_ARM_LIMIT: OutcomeKind.OVER_ARM_LIMIT,
}
# The label of each fate of an outcome the join turned down (not learned from).
_TURNED_DOWN_KIND = {
    Fate.DUPLICATE: OutcomeKind.DUPLICATE,
    Fate.ORPHAN: OutcomeKind.ORPHAN,
    Fate.EXPIRED: OutcomeKind.EXPIRED,
    Fate.UNMATCHED: OutcomeKind.UNMATCHED,
    Fate.UNATTRIBUTED: OutcomeKind.UNATTRIBUTED,
}
RESTORE_RETRY_S = 2.0


@dataclass(frozen=True)
class RewardJoin:
    """How outcomes become rewards: weights, and the join window (see the module docstring).

    ``lateness`` is how far behind the latest event time an impression's window may end and still take
    outcomes; ``max_outcome_ids`` recent outcome event ids are remembered to recognise redeliveries.
    The watermark never runs more than ``max_clock_skew`` ahead of this machine's clock, so one event
    stamped in the future cannot close the open impressions early."""

    weights: RewardWeights = field(default_factory=RewardWeights)
    window: timedelta = timedelta(minutes=30)
    lateness: timedelta = timedelta(minutes=30)
    max_outcome_ids: int = 200_000
    max_clock_skew: timedelta = timedelta(minutes=5)

    def new_join(self) -> ImpressionJoin:
        return ImpressionJoin(
            self.window,
            self.weights,
            self.lateness,
            max_event_ids=self.max_outcome_ids,
            record_credits=True,
            latest_bound=lambda: datetime.now(UTC) + self.max_clock_skew,
        )


class LogRecord(Protocol):
    """One record of the event log (``kafka.consumer.fetcher.ConsumerRecord`` is one)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...


# Reads the log's records in [start, end) per partition, in offset order within each partition, in
# chunks; raises Unavailable when it cannot.
WindowReader = Callable[[Mapping[LogPartition, tuple[int, int]]], Iterable[Sequence[LogRecord]]]


class EventConsumer(Protocol):
    """The part of ``kafka.KafkaConsumer`` the updater uses (see ``shared.kafka.make_consumer``)."""

    def poll(self, timeout_ms: int = 0) -> Mapping[Any, list[Any]]: ...

    def commit(self, offsets: Mapping[Any, Any] | None = None) -> None: ...

    def close(self) -> None: ...


class WatchedEventConsumer(EventConsumer, PositionedConsumer, Protocol):
    """An :class:`EventConsumer` whose progress a stall check can read (``kafka.KafkaConsumer`` is one)."""


# A consumer with the GroupMembership listener it subscribed with: one the updater can watch.
WatchedSubscription = tuple[WatchedEventConsumer, GroupMembership]


class PolicyUpdater:
    """Runs the loop of the module docstring in its own thread, between :meth:`start` and :meth:`stop`.

    A changed catalog is published every ``publish_every_s`` seconds, or sooner once
    ``publish_every_outcomes`` bundle events were learned from since the last publish. A store that is
    unavailable is retried every ``publish_every_s``; any other error ends the loop, marks
    :attr:`crashed` and calls ``on_crash`` so that the process can exit and be restarted.

    Every publish is a guard-railed refresh of the approved version (``guard``, see
    :mod:`services.policy.rollout`). Before publishing a catalog, the updater checks its latest version:
    one it did not publish itself (a promotion or a rollback) is adopted, i.e. loaded into the learner,
    and becomes the approved version; what was learned since the updater's own last publish is dropped
    with it (logged), as the operator asked.

    ``consumer_factory`` makes the Kafka consumer. One it returns with the :class:`GroupMembership`
    listener it subscribed with is watched: once it has stalled for ``stall_after_s`` it is closed and
    the factory makes another (see the module docstring). One returned alone is kept however it fares.

    ``rewards`` says how outcomes are credited. ``window_reader`` reads the log again on start to
    rebuild the join window (see the module docstring); without one, outcomes whose impression came
    before the restart are orphans unless the consumer delivers that impression again.

    ``bandit`` (the kind ``contextual_bandit``) learns from the closed impressions and is published with
    every snapshot; None publishes click rates alone.
    """

    def __init__(
        self,
        store: SnapshotStore,
        learner: BetaArms,
        consumer_factory: Callable[[], EventConsumer | WatchedSubscription],
        publish_every_s: float,
        publish_every_outcomes: int,
        poll_timeout_ms: int = 200,
        guard: RefreshGuard | None = None,
        stall_after_s: float = 30.0,
        rewards: RewardJoin | None = None,
        window_reader: WindowReader | None = None,
        bandit: CatalogBandits | None = None,
    ) -> None:
        self._store = store
        self._guard = guard
        self._learner = learner
        self._bandit = bandit
        # Per catalog, what its restored snapshot's bandit state counts: the join watermark it was
        # published at and its log positions (see the module docstring).
        self._bandit_counted: dict[str, tuple[datetime | None, dict[LogPartition, int]]] = {}
        self._consumer_factory = consumer_factory
        self._publish_every_s = publish_every_s
        self._publish_every_outcomes = publish_every_outcomes
        self._poll_timeout_ms = poll_timeout_ms
        self._stall_check = ConsumerStallCheck(stall_after_s)
        self._join = (rewards or RewardJoin()).new_join()
        self._window_reader = window_reader
        # Per partition, where the join window was rebuilt from on start (published until read past).
        self._window_start: dict[LogPartition, int] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._crashed = False
        # Per catalog: the latest version this process published, restored or adopted, and its params.
        self._approved: dict[str, tuple[int, PolicyParams]] = {}
        # Per catalog: the positions its latest snapshot (published or restored) covers.
        self._snapshot_positions: dict[str, dict[LogPartition, int]] = {}
        # Next offset to read per partition, in this process; what a commit would cover.
        self._read_positions: dict[LogPartition, int] = {}
        self._committed_positions: dict[LogPartition, int] = {}
        # Catalogs changed since their last publish, with how many events changed them.
        self._unpublished: Tally[str] = Tally()
        self._next_publish_at = 0.0
        # After a failed publish, the outcome count does not trigger a retry before this time.
        self._retry_at = 0.0

    def approved_version(self, catalog: str) -> int | None:
        """The version of ``catalog`` this updater last published, restored or adopted (None: none yet).

        Read from another thread, it may lag the loop by one publish."""
        approved = self._approved.get(catalog)
        return None if approved is None else approved[0]

    @property
    def crashed(self) -> bool:
        """True once the loop ended on an unexpected error."""
        return self._crashed

    def start(self, on_crash: Callable[[], None] | None = None) -> None:
        """Starts the loop in a (non-daemon) thread; returns at once."""
        if self._thread is not None:
            raise RuntimeError("the policy updater was already started")
        self._thread = threading.Thread(target=self._run, args=(on_crash,), name="policy-updater")
        self._thread.start()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Lets the loop finish its current batch, publish, commit and close the consumer; waits for it.

        Idempotent; from inside the loop's own thread (an ``on_crash`` callback) it does not wait.
        """
        self._stopping.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return
        thread.join(timeout_s)
        if thread.is_alive():
            log.error("policy updater did not stop within %.0f s", timeout_s)

    def _run(self, on_crash: Callable[[], None] | None) -> None:
        consumer: EventConsumer | None = None
        try:
            if not self._restore():
                return
            self._rejoin_window()
            consumer, watched = self._subscribe()
            self._next_publish_at = time.monotonic() + self._publish_every_s
            while not self._stopping.is_set():
                polled = consumer.poll(timeout_ms=self._poll_timeout_ms)
                if polled:
                    self._stall_check.consumed()
                for records in polled.values():
                    for record in records:
                        self._apply(record.topic, record.partition, record.offset, record.value)
                if self._publish_due():
                    self._publish_and_commit(consumer)
                if watched is not None and self._stalled(*watched):
                    self._close_stalled(consumer, watched[1])
                    consumer = None  # closed: not to be closed again should the factory fail
                    consumer, watched = self._subscribe()
                    CONSUMER_REPLACEMENTS.inc()
            if not self._publish_and_commit(consumer):
                log.error(
                    "stopping with unpublished changes to %s; their events were not committed and will "
                    "be read again on the next start",
                    sorted(self._unpublished),
                )
        except Exception:
            self._crashed = True
            log.exception("policy updater failed")
            if on_crash is not None:
                on_crash()
        finally:
            if consumer is not None:
                consumer.close()
            log.info("policy updater stopped")

    def _subscribe(self) -> tuple[EventConsumer, WatchedSubscription | None]:
        """A new consumer from the factory, and the same with its membership when it can be watched."""
        made = self._consumer_factory()
        self._stall_check.restarted()
        if isinstance(made, tuple):
            return made[0], made
        return made, None

    def _stalled(self, consumer: WatchedEventConsumer, membership: GroupMembership) -> bool:
        """Whether ``consumer`` has stalled (see :class:`ConsumerStallCheck`); updates the member gauge."""
        GROUP_MEMBER.set(1 if membership.settled else 0)
        return self._stall_check.stalled(consumer, membership)

    def _close_stalled(self, consumer: EventConsumer, membership: GroupMembership) -> None:
        """Closes a stalled consumer without publishing or committing: the next consumer reads again
        from the committed offsets, and :meth:`_apply` skips what this process already learned from."""
        log.warning(
            "the Kafka consumer has %s for %.0fs; replacing it with a new one",
            stall_reason(membership.settled),
            self._stall_check.stall_after_s,
        )
        try:
            consumer.close()
        except KafkaError as exc:
            log.warning("closing the stalled consumer failed (%s); carrying on with a new one", exc)

    def _restore(self) -> bool:
        """Loads every catalog's latest snapshot; False if stopped before the store answered."""
        while True:
            try:
                # Per partition: the greatest log position of a snapshot with a window position, and it.
                newest_window: dict[LogPartition, tuple[int, int]] = {}
                for catalog in self._store.catalogs():
                    snapshot = self._store.latest(catalog)
                    if snapshot is None:
                        continue
                    self._learner.load(catalog, snapshot.params)
                    self._snapshot_positions[catalog] = dict(snapshot.params.log_positions)
                    if self._bandit is not None:
                        bandit = snapshot.params.bandit
                        self._bandit.load(catalog, bandit)
                        closed_through = None if bandit is None else bandit.closed_through
                        self._bandit_counted[catalog] = (closed_through, dict(snapshot.params.log_positions))
                    for position, start in snapshot.params.window_positions.items():
                        read_to = snapshot.params.log_positions.get(position, start)
                        if read_to >= newest_window.get(position, (-1, 0))[0]:
                            newest_window[position] = (read_to, start)
                    self._approved[catalog] = (snapshot.version, snapshot.params)
                    PUBLISHED_VERSION.labels(catalog).set(snapshot.version)
                    log.info(
                        "restored policy of %s from version %d (%d arms)",
                        catalog,
                        snapshot.version,
                        len(snapshot.params.arms),
                    )
                # The latest publish knew best what the join held: every catalog's window is in it.
                self._window_start = {position: start for position, (_, start) in newest_window.items()}
                return True
            except Unavailable as exc:
                log.warning("cannot restore policies yet, retrying in %.0f s: %s", RESTORE_RETRY_S, exc)
                if self._stopping.wait(RESTORE_RETRY_S):
                    return False

    def _rejoin_window(self) -> None:
        """Reads the log again from the restored window positions up to the snapshots' positions, into
        the join (see the module docstring); a reader that fails leaves the window partly rebuilt."""
        ends: dict[LogPartition, int] = {}
        for positions in self._snapshot_positions.values():
            for position, offset in positions.items():
                ends[position] = max(offset, ends.get(position, 0))
        ranges = {
            position: (start, ends[position])
            for position, start in self._window_start.items()
            if start < ends.get(position, 0)
        }
        if not ranges or self._window_reader is None:
            return
        events = 0
        try:
            for records in self._window_reader(ranges):
                for record in records:
                    self._apply(record.topic, record.partition, record.offset, record.value, rejoining=True)
                events += len(records)
        except Unavailable as exc:
            log.warning(
                "rebuilt the join window from %d events only (%s); outcomes of earlier impressions it missed "
                "will count as orphans",
                events,
                exc,
            )
            return
        log.info("rebuilt the join window from %d events (%d open impressions)", events, self._join.open_impressions)

    def _apply(self, topic: str, partition: int, offset: int, value: bytes | None, rejoining: bool = False) -> None:
        position = (topic, partition)
        # A rebalance may hand back a partition from its committed offset: skip what this process
        # already learned from (and gave to the join).
        if offset < self._read_positions.get(position, 0):
            OUTCOMES.labels(OutcomeKind.ALREADY_COUNTED).inc()
            return
        self._read_positions[position] = offset + 1
        try:
            event = parse_event(value or b"")
        except InvalidEvent:
            OUTCOMES.labels(OutcomeKind.REJOINED if rejoining else OutcomeKind.INVALID).inc()
            return
        if not isinstance(event, BundleImpressionEvent | BundleOutcomeEvent):
            OUTCOMES.labels(OutcomeKind.REJOINED if rejoining else OutcomeKind.OTHER).inc()
            return
        catalog = event.catalog_id
        verdict = self._join.add(event, origin=(position, offset))
        credits = self._join.drain_credits()
        if self._bandit is not None:
            for closed in verdict.closed:
                self._learn_closed(self._bandit, closed)
        if offset < self._snapshot_positions.get(catalog, {}).get(position, 0):
            # The arms already count it; the join needed it for the outcomes still to come.
            OUTCOMES.labels(OutcomeKind.REJOINED if rejoining else OutcomeKind.ALREADY_COUNTED).inc()
            return
        changed = False
        if isinstance(event, BundleImpressionEvent):
            bundles = dict.fromkeys(shown.bundle_id for shown in event.bundles)
            if verdict.fate is Fate.DUPLICATE:
                OUTCOMES.labels(OutcomeKind.DUPLICATE).inc(len(bundles))
            else:
                observations = Tally(
                    self._learner.observe_impression(catalog, event.impression_id, bundle_id) for bundle_id in bundles
                )
                # One metric update per kind, not per bundle: this loop runs for every bundle shown.
                for observed, times in observations.items():
                    OUTCOMES.labels(_OBSERVATION_KIND.get(observed, OutcomeKind.IMPRESSION)).inc(times)
                changed = Observation.COUNTED in observations
        for credit in credits:
            changed |= self._learn(credit)
        _count_turned_down(verdict.turned_down)
        if changed:
            self._unpublished[catalog] += 1

    def _learn(self, credit: Credit) -> bool:
        """Adds a credited outcome to its arm; True if the arm changed."""
        # Capped at one success per showing (see the module docstring): what the showing earned beyond
        # that is not learned from.
        gained = max(min(credit.reward_after, 1.0) - min(credit.reward_before, 1.0), 0.0)
        clicks = 1 if credit.kind is EventType.BUNDLE_CLICK else 0
        observed = self._learner.credit(credit.catalog_id, credit.bundle_id, gained, clicks)
        kind = OutcomeKind.CLICK if clicks else OutcomeKind.PURCHASE
        OUTCOMES.labels(_OBSERVATION_KIND.get(observed, kind)).inc()
        if credit.late:
            LATE_OUTCOMES.inc()
        return observed is Observation.COUNTED and (clicks > 0 or gained > 0)

    def _learn_closed(self, bandit: CatalogBandits, closed: JoinedImpression) -> None:
        """Gives a closed impression to the bandit, unless the restored snapshot's state counts it."""
        catalog = closed.catalog_id
        closed_through, positions = self._bandit_counted.get(catalog, (None, {}))
        if closed_through is not None and closed.origin is not None:
            partition, offset = closed.origin
            read_before = offset < positions.get(cast(LogPartition, partition), 0)
            if read_before and closed.event_time + self._join.window <= closed_through:
                return
        observed = bandit.observe(closed)
        if observed is BanditObservation.WITHOUT_FEATURES:
            IMPRESSIONS_WITHOUT_FEATURES.labels(catalog).inc()
            return
        BANDIT_IMPRESSIONS.labels(catalog, observed).inc()
        if observed is BanditObservation.LEARNED:
            self._unpublished[catalog] += 1

    def _window_positions(self) -> dict[LogPartition, int]:
        """Per partition, where a restart must read the log again from to rebuild the join window."""
        held = cast(dict[LogPartition, int], self._join.held_from())
        positions = dict(self._window_start)
        for position, offset in self._read_positions.items():
            positions[position] = min(held.get(position, offset), offset)
        return positions

    def _publish_due(self) -> bool:
        now = time.monotonic()
        if now >= self._next_publish_at:
            return True
        return now >= self._retry_at and self._unpublished.total() >= self._publish_every_outcomes

    def _publish_and_commit(self, consumer: EventConsumer) -> bool:
        """Publishes every changed catalog, then commits what was read. False if a publish failed."""
        self._next_publish_at = time.monotonic() + self._publish_every_s
        for catalog in sorted(self._unpublished):
            if not self._publish(catalog):
                self._retry_at = self._next_publish_at
                return False
        if self._read_positions != self._committed_positions:
            positions = dict(self._read_positions)
            try:
                consumer.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in positions.items()})
            except KafkaError as exc:
                # Harmless: the next commit covers these offsets too, and a restart before it skips
                # what the snapshots already counted.
                log.warning("committing offsets failed, retrying with the next publish: %s", exc)
            else:
                self._committed_positions = positions
        return True

    def _publish(self, catalog: str) -> bool:
        events = self._unpublished[catalog]
        started = time.perf_counter()
        try:
            if self._adopt_external_version(catalog, events):
                return True
            positions = dict(self._snapshot_positions.get(catalog, {}))
            for position, offset in self._read_positions.items():
                positions[position] = max(offset, positions.get(position, 0))
            learned = replace(
                self._learner.snapshot(catalog),
                log_positions=positions,
                window_positions=self._window_positions(),
                bandit=None
                if self._bandit is None
                else self._bandit.snapshot(catalog, closed_through=self._closed_through(catalog)),
            )
            approved = self._approved.get(catalog)
            params = learned if self._guard is None else self._guard.apply(approved and approved[1], learned)
            version = self._store.publish(catalog, params, note=f"learned from {events} more bundle events")
        except Unavailable as exc:
            PUBLISH_FAILURES.inc()
            log.warning("publishing the policy of %s failed, retrying later: %s", catalog, exc)
            return False
        PUBLISH_DURATION.observe(time.perf_counter() - started)
        PUBLISHED_VERSION.labels(catalog).set(version)
        self._snapshot_positions[catalog] = positions
        self._approved[catalog] = (version, params)
        del self._unpublished[catalog]
        log.info(
            "published policy of %s version %d (%d arms, %d new events)", catalog, version, len(params.arms), events
        )
        return True

    def _closed_through(self, catalog: str) -> datetime | None:
        """The join's watermark, or before this process read anything, what the restored snapshot had."""
        watermark = self._join.watermark
        return watermark if watermark is not None else self._bandit_counted.get(catalog, (None, {}))[0]

    def _adopt_external_version(self, catalog: str, events: int) -> bool:
        """Loads a version of ``catalog`` published by someone else since this process's last one;
        True if there was one. Raises Unavailable."""
        latest = self._store.latest(catalog)
        approved = self._approved.get(catalog)
        if latest is None or (approved is not None and latest.version == approved[0]):
            return False
        self._learner.load(catalog, latest.params)
        if self._bandit is not None:
            self._bandit.load(catalog, latest.params.bandit)
        positions = dict(latest.params.log_positions)
        for position, offset in self._read_positions.items():
            positions[position] = max(offset, positions.get(position, 0))
        self._snapshot_positions[catalog] = positions
        self._approved[catalog] = (latest.version, latest.params)
        PUBLISHED_VERSION.labels(catalog).set(latest.version)
        del self._unpublished[catalog]
        log.warning(
            "policy of %s: adopted version %d published elsewhere (%s); dropped %d bundle events learned since "
            "this process's last publish",
            catalog,
            latest.version,
            latest.note,
            events,
        )
        return True


def _count_turned_down(turned_down: Sequence[Fate]) -> None:
    """Counts the outcomes the join turned down (duplicates, orphans, ...), one metric update per kind."""
    if not turned_down:
        return
    for fate, times in Tally(turned_down).items():
        OUTCOMES.labels(_TURNED_DOWN_KIND[fate]).inc(times)
