"""Builders and in-memory fakes shared by the policy tests."""

from __future__ import annotations

import math
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import text

from services.policy.bandit import BanditLearning, BanditParams, BundleSums
from services.policy.domain import BetaArms, PolicyParams, Snapshot, policy_name
from shared.bandit_features import FEATURES
from shared.errors import Unavailable
from shared.events import (
    BundleImpressionEvent,
    BundleOutcomeEvent,
    ItemEvent,
    ShownBundle,
    encode_event,
)
from shared.store.migrate import make_engine, upgrade_to_head

T = TypeVar("T")
POSTGRES_URL = os.environ.get(
    "BUNDLEWISE_POSTGRES_URL", "postgresql+psycopg://bundlewise:bundlewise@127.0.0.1:5432/bundlewise"
)
KAFKA_BOOTSTRAP = os.environ.get("BUNDLEWISE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
EVENT_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
_event_ids = iter(range(10**9))


def next_event_id() -> str:
    return f"evt-{next(_event_ids):08d}"


def impression(
    catalog: str,
    impression_id: str,
    bundles: list[str],
    user: str = "u1",
    features: Sequence[Sequence[float] | None] | None = None,
    propensities: Sequence[float] | None = None,
) -> BundleImpressionEvent:
    """Shows ``bundles`` at positions 0, 1, ...; each with its ``features`` and propensity (0.5) if given."""
    return BundleImpressionEvent(
        type="bundle_impression",
        event_id=next_event_id(),
        catalog_id=catalog,
        user_id=user,
        event_time=EVENT_TIME,
        impression_id=impression_id,
        bundles=[
            ShownBundle(
                bundle_id=b,
                position=i,
                propensity=0.5 if propensities is None else propensities[i],
                policy_features=None if features is None or features[i] is None else list(features[i] or ()),
            )
            for i, b in enumerate(bundles)
        ],
    )


def click(catalog: str, impression_id: str | None, bundle: str, user: str = "u1") -> BundleOutcomeEvent:
    return BundleOutcomeEvent(
        type="bundle_click",
        event_id=next_event_id(),
        catalog_id=catalog,
        user_id=user,
        event_time=EVENT_TIME,
        bundle_id=bundle,
        impression_id=impression_id,
    )


def purchase(catalog: str, impression_id: str, bundle: str, user: str = "u1") -> BundleOutcomeEvent:
    return BundleOutcomeEvent(
        type="bundle_purchase",
        event_id=next_event_id(),
        catalog_id=catalog,
        user_id=user,
        event_time=EVENT_TIME,
        bundle_id=bundle,
        impression_id=impression_id,
        revenue=10.0,
    )


# The shopper of the contextual bandit tests: (shopper_looks, shopper_clicked_before) per kind of bundle.
SHOPPER_FEEDBACK = {
    "clicked_before": (math.log1p(1.0), 1.0),
    "ignored_often": (math.log1p(6.0), 0.0),
    "new": (0.0, 0.0),
}
# Click probability at the top position by (feedback, whether the bundle is "star").
SHOPPER_CLICKS = {
    ("clicked_before", False): 0.6,
    ("clicked_before", True): 0.9,
    ("ignored_often", False): 0.0,
    ("ignored_often", True): 0.0,
    ("new", False): 0.05,
    ("new", True): 0.5,
}
STAR = "star"


@dataclass(frozen=True)
class Showing:
    """One list shown to the bandit tests' shopper: bundles by position, their features
    (shared.bandit_features.FEATURES), propensities, and the bundles the shopper clicked."""

    bundles: list[str]
    features: list[tuple[float, ...]]
    propensities: list[float]
    clicked: list[str]


def shopper_showings(n: int, seed: int = 7) -> list[Showing]:
    """``n`` lists of 3 of 10 bundles, each bundle with a random kind of feedback from the shopper. The
    shopper clicks bundles they clicked before (often), never those they were shown many times, rarely
    new ones, and :data:`STAR` far more often than the others; a position's chance of a click falls
    with its depth. One list in ten is a uniform one (propensity 0.02 at every position)."""
    rng = random.Random(seed)
    pool = [STAR] + [f"b{i}" for i in range(9)]
    showings = []
    for _ in range(n):
        bundles = rng.sample(pool, 3)
        uniform = rng.random() < 0.1
        features: list[tuple[float, ...]] = []
        clicked = []
        for position, bundle in enumerate(bundles):
            feedback = rng.choice(list(SHOPPER_FEEDBACK))
            looks, clicked_before = SHOPPER_FEEDBACK[feedback]
            features.append((1.0, rng.gauss(0.0, 1.0), rng.random(), 1.0 / (1 + position), looks, clicked_before))
            if rng.random() < SHOPPER_CLICKS[(feedback, bundle == STAR)] / math.sqrt(1 + position):
                clicked.append(bundle)
        showings.append(Showing(bundles, features, [0.02 if uniform else 0.96] * 3, clicked))
    return showings


def item_view(catalog: str, item: str, user: str = "u1") -> ItemEvent:
    return ItemEvent(
        type="view",
        event_id=next_event_id(),
        catalog_id=catalog,
        user_id=user,
        event_time=EVENT_TIME,
        item_id=item,
    )


def create_namespace() -> str:
    """A new, migrated PostgreSQL schema for one test (or module) of its own."""
    name = f"policytest_{uuid.uuid4().hex[:12]}"
    upgrade_to_head(POSTGRES_URL, name)
    return name


def drop_namespace(name: str) -> None:
    engine = make_engine(POSTGRES_URL, name)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    finally:
        engine.dispose()


def learner(**overrides: Any) -> BetaArms:
    settings: dict[str, Any] = {
        "temperature": 0.1,
        "ctr_weight": 1.0,
        "prior_alpha": 1.0,
        "prior_beta": 20.0,
        "max_arms": 1000,
        "dedup_window": 1000,
    }
    settings.update(overrides)
    return BetaArms(**settings)


def bandit_params(
    weights: Sequence[float] = (0.1, 0.2, -0.05, 0.3, -0.4, 0.5),
    biases: Mapping[str, float] | None = None,
    closed_through: datetime | None = None,
) -> BanditParams:
    """A bandit over FEATURES serving ``weights`` and ``biases`` (default: b1 0.25, b2 -0.125), with a
    small learning state of its own for each biased bundle."""
    biases = {"b1": 0.25, "b2": -0.125} if biases is None else biases
    d = len(FEATURES)
    return BanditParams(
        feature_names=FEATURES,
        weights=tuple(weights),
        biases=dict(biases),
        learning=BanditLearning(
            shared_gram=tuple(tuple(2.0 if i == j else 0.5 for j in range(d)) for i in range(d)),
            shared_target=(0.5,) * d,
            bundles={bundle: BundleSums(1.5, 0.25, (0.75,) * d) for bundle in biases},
            explored_clicks=(1.0, 0.5),
            explored_shown=(4.0, 4.0),
        ),
        closed_through=closed_through,
    )


def counts(params: PolicyParams | None) -> dict[str, tuple[int, int]]:
    """bundle id -> (impressions, clicks)."""
    return {} if params is None else {a.bundle_id: (a.impressions, a.clicks) for a in params.arms}


def wait_for(read: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 60.0) -> T:
    """Calls ``read`` until ``done`` holds for its result; returns the last result either way."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


class InMemorySnapshotStore:
    """A SnapshotStore in a list; ``fail_next_publishes`` makes that many publishes raise Unavailable.

    ``journal`` (shared with a FakeConsumer) records publishes and commits in the order they happened.
    """

    def __init__(self, journal: list[tuple[str, Any]] | None = None) -> None:
        self.snapshots: list[Snapshot] = []
        self.journal = journal if journal is not None else []
        self.fail_next_publishes = 0
        self._lock = threading.Lock()

    def latest(self, catalog_id: str) -> Snapshot | None:
        with self._lock:
            mine = [s for s in self.snapshots if s.catalog_id == catalog_id]
        return mine[-1] if mine else None

    def get(self, catalog_id: str, version: int) -> Snapshot | None:
        with self._lock:
            return next((s for s in self.snapshots if (s.catalog_id, s.version) == (catalog_id, version)), None)

    def history(self, catalog_id: str, limit: int) -> list[Snapshot]:
        with self._lock:
            return [s for s in reversed(self.snapshots) if s.catalog_id == catalog_id][:limit]

    def publish(self, catalog_id: str, params: PolicyParams, note: str) -> int:
        with self._lock:
            if self.fail_next_publishes > 0:
                self.fail_next_publishes -= 1
                raise Unavailable("store down (test)")
            version = 1 + sum(1 for s in self.snapshots if s.catalog_id == catalog_id)
            self.snapshots.append(Snapshot(catalog_id, version, policy_name(params), params, note, datetime.now(UTC)))
            self.journal.append(("publish", (catalog_id, version)))
            return version

    def catalogs(self) -> list[str]:
        with self._lock:
            return sorted({s.catalog_id for s in self.snapshots})


@dataclass(frozen=True)
class FakeRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None


@dataclass
class FakeConsumer:
    """Hands out ``batches`` one per poll, then nothing; records commits in ``journal``."""

    batches: list[list[FakeRecord]]
    journal: list[tuple[str, Any]] = field(default_factory=list)
    closed: bool = False
    drained: threading.Event = field(default_factory=threading.Event)

    def poll(self, timeout_ms: int = 0) -> Mapping[Any, list[Any]]:
        if not self.batches:
            self.drained.set()
            time.sleep(timeout_ms / 1000)
            return {}
        batch = self.batches.pop(0)
        by_partition: dict[tuple[str, int], list[FakeRecord]] = {}
        for record in batch:
            by_partition.setdefault((record.topic, record.partition), []).append(record)
        return by_partition

    def commit(self, offsets: Mapping[Any, Any] | None = None) -> None:
        assert offsets is not None
        self.journal.append(("commit", {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}))

    def close(self) -> None:
        self.closed = True


def records(topic: str, partition: int, events: list[Any], first_offset: int = 0) -> list[FakeRecord]:
    """Consecutive records of ``events`` (events or raw bytes) on one partition."""
    return [
        FakeRecord(topic, partition, first_offset + i, e if isinstance(e, bytes) else encode_event(e))
        for i, e in enumerate(events)
    ]
