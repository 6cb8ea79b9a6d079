"""The served contextual bandit: one :class:`~services.policy.contextual.HybridLinUCB` per catalog,
learned from closed impressions whose shown bundles carry the features the ranker chose them with.

The ranker computes each candidate's :data:`shared.bandit_features.FEATURES` when it serves a bandit
snapshot, answers them with each shown bundle, and the storefront sends them back with the impression
(``ShownBundle.policy_features``); the join keeps them until the impression closes
(:mod:`services.policy.join`). What is learned from one closed impression:

- its first ``slate_size`` positions (the setting ``BUNDLEWISE_POLICY_BANDIT_POSITIONS``); deeper ones
  are not learned from;
- each position's reward: the join's weighted reward clipped to [0, 1], as the Beta arms learn it;
- whether the list was a uniform one (``explored``, which drives the examination estimate): inferred
  from the logged propensities, see :data:`EXPLORED_BELOW`.

An impression some of whose shown bundles carry no features, or not ``len(FEATURES)`` of them (shown by
a policy that was not a bandit, or by a ranker of another release), is not learned from here
(:attr:`BanditObservation.WITHOUT_FEATURES`); the click rates still learn from it. A catalog learns at
most ``max_bundles`` bundles; an impression showing a further one is skipped
(:attr:`BanditObservation.OVER_ARM_LIMIT`).

Observations are batched: :meth:`CatalogBandits.snapshot` feeds them to the catalog's bandit, which
solves once per batch, so a refresh costs one solve (``O(bundles × d²)``), not one per impression.

What is served is the bandit's mean, ``weights · features + bias[bundle]``, with the ε-mixture's
exploration; the UCB bonus (``alpha``) is not served. Pure: no transport, storage or clock; not
thread-safe (one updater thread owns it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import numpy as np

from services.policy.contextual import BanditConfig, BanditState, FloatArray, HybridLinUCB
from services.policy.join import JoinedImpression
from shared.bandit_features import FEATURES

log = logging.getLogger(__name__)

# A list was a uniform one when any shown position's propensity is below this. Under the ε-mixture a
# greedy position logs (1 − ε) + ε / M ≥ 0.7 for ε ≤ 0.3 (the bandit's most exploration), while a
# uniform list logs ε / M ≤ 0.3 wherever it differs from the greedy list. A uniform list that happens to
# equal the greedy one reads as greedy, as the simulator counts it too.
EXPLORED_BELOW = 0.5
# Observations held before they are fed to the bandit even without a refresh (bounds the memory while
# publishing fails).
MAX_PENDING = 10_000
_MIN_CAPACITY = 64


@dataclass(frozen=True)
class BundleSums:
    """One bundle's part of the learning state, with ``e`` the examination of the position it was shown
    at, ``z`` its features and ``y`` its reward: ``count`` = Σ e², ``target`` = Σ e y, ``features`` =
    Σ e² z (see :class:`~services.policy.contextual.BanditState`)."""

    count: float
    target: float
    features: tuple[float, ...]


@dataclass(frozen=True)
class BanditLearning:
    """Everything a catalog's bandit learned, as plain sums: the
    :class:`~services.policy.contextual.BanditState`, per bundle id instead of per index. Shapes, with
    ``d`` features and ``K`` positions learned from: ``shared_gram`` [d][d], ``shared_target`` [d],
    each bundle's ``features`` [d], ``explored_clicks`` and ``explored_shown`` [K]."""

    shared_gram: tuple[tuple[float, ...], ...]
    shared_target: tuple[float, ...]
    bundles: Mapping[str, BundleSums]
    explored_clicks: tuple[float, ...]
    explored_shown: tuple[float, ...]


@dataclass(frozen=True)
class BanditParams:
    """A catalog's contextual bandit as a snapshot carries it.

    Served: a candidate's attractiveness is ``weights · features + biases[bundle]`` (0 for a bundle
    without a bias), over the features ``feature_names`` in that order. Learning: ``learning``, the
    learner's whole state (the served weights and biases may lag it: see
    :class:`~services.policy.rollout.RefreshGuard`), and ``closed_through``, the join's watermark when it
    was published: ``learning`` counts every impression read below the snapshot's ``log_positions`` whose
    window ended by then, and no other (None: it counts none of those the log still holds).
    """

    feature_names: tuple[str, ...]
    weights: tuple[float, ...]
    biases: Mapping[str, float]
    learning: BanditLearning
    closed_through: datetime | None = None


class BanditObservation(StrEnum):
    """What became of one closed impression given to :meth:`CatalogBandits.observe`."""

    LEARNED = "learned"
    WITHOUT_FEATURES = "without_features"
    OVER_ARM_LIMIT = "over_arm_limit"


# One impression waiting to be learned: features [K][d], bundle indices [K], rewards [K], explored.
_Pending = tuple[tuple[tuple[float, ...], ...], tuple[int, ...], tuple[float, ...], bool]


class _CatalogBandit:
    """One catalog's bandit, its bundle index map, and the impressions not yet fed to it."""

    def __init__(self, config: BanditConfig, index: dict[str, int] | None = None) -> None:
        self.config = config
        self.index: dict[str, int] = index or {}
        self.model = HybridLinUCB(config, n_bundles=max(len(self.index), _MIN_CAPACITY))
        self.pending: dict[int, list[_Pending]] = {}
        self.pending_count = 0

    def indices(self, bundle_ids: Sequence[str], max_bundles: int) -> tuple[int, ...] | None:
        """The index of each of ``bundle_ids``, new ones added; None (and nothing added) if that would
        take the catalog beyond ``max_bundles``."""
        new = [bundle_id for bundle_id in dict.fromkeys(bundle_ids) if bundle_id not in self.index]
        if len(self.index) + len(new) > max_bundles:
            return None
        for bundle_id in new:
            self.index[bundle_id] = len(self.index)
        return tuple(self.index[bundle_id] for bundle_id in bundle_ids)

    def add(self, observation: _Pending) -> None:
        self.pending.setdefault(len(observation[1]), []).append(observation)
        self.pending_count += 1
        if self.pending_count >= MAX_PENDING:
            self.learn_pending()

    def learn_pending(self) -> None:
        """Feeds the waiting impressions to the bandit: one ``observe`` (one solve) per list length."""
        if not self.pending:
            return
        self._grow(len(self.index))
        for _, batch in sorted(self.pending.items()):
            self.model.observe(
                np.array([features for features, _, _, _ in batch], dtype=np.float64),
                np.array([bundles for _, bundles, _, _ in batch], dtype=np.int64),
                np.array([rewards for _, _, rewards, _ in batch], dtype=np.float64),
                np.array([explored for _, _, _, explored in batch], dtype=np.bool_),
            )
        self.pending = {}
        self.pending_count = 0

    def load(self, state: BanditState) -> None:
        """Replaces the learned state (indexed as :attr:`index`) and drops the waiting impressions."""
        self.model = HybridLinUCB(self.config, n_bundles=state.bundle_counts.shape[0])
        self.model.load(state)
        self.pending = {}
        self.pending_count = 0

    def _grow(self, bundles: int) -> None:
        """Makes room for ``bundles`` bundles (doubling), keeping what was learned and what waits."""
        capacity = self.model.n_bundles
        if bundles <= capacity:
            return
        state = _padded(self.model.state(), max(bundles, 2 * capacity))
        self.model = HybridLinUCB(self.config, n_bundles=state.bundle_counts.shape[0])
        self.model.load(state)

    def params(self, closed_through: datetime | None) -> BanditParams:
        state = self.model.state()
        weights = self.model.weights()
        biases = self.model.biases()
        learning = BanditLearning(
            shared_gram=tuple(_floats(row) for row in state.shared_gram),
            shared_target=_floats(state.shared_target),
            bundles={
                bundle_id: BundleSums(
                    float(state.bundle_counts[i]), float(state.bundle_target[i]), _floats(state.bundle_features[i])
                )
                for bundle_id, i in sorted(self.index.items())
            },
            explored_clicks=_floats(state.explored_clicks),
            explored_shown=_floats(state.explored_shown),
        )
        return BanditParams(
            feature_names=FEATURES,
            weights=_floats(weights),
            biases={bundle_id: float(biases[i]) for bundle_id, i in sorted(self.index.items())},
            learning=learning,
            closed_through=closed_through,
        )


class CatalogBandits:
    """Per-catalog contextual bandits learned from closed impressions (see the module docstring).

    ``config.slate_size`` is how many positions of an impression are learned from; ``config.ridge`` and
    ``config.bundle_ridge`` the prior precisions; ``epsilon`` and ``alpha`` are not used here (serving
    explores by the ε-mixture of the snapshot's ``epsilon``). A catalog learns at most ``max_bundles``
    bundles.
    """

    def __init__(self, config: BanditConfig, max_bundles: int) -> None:
        if max_bundles < 1:
            raise ValueError(f"max_bundles must be at least 1, got {max_bundles}")
        self._config = config
        self._max_bundles = max_bundles
        self._catalogs: dict[str, _CatalogBandit] = {}

    @property
    def positions(self) -> int:
        """How many positions of an impression are learned from."""
        return self._config.slate_size

    def observe(self, impression: JoinedImpression) -> BanditObservation:
        """Takes one closed impression, to be learned at the next :meth:`snapshot` of its catalog."""
        shown = impression.shown
        if any(position.features is None or len(position.features) != len(FEATURES) for position in shown):
            return BanditObservation.WITHOUT_FEATURES
        learned = shown[: self._config.slate_size]
        bandit = self._catalogs.get(impression.catalog_id)
        if bandit is None:
            bandit = self._catalogs[impression.catalog_id] = _CatalogBandit(self._config)
        indices = bandit.indices([position.bundle_id for position in learned], self._max_bundles)
        if indices is None:
            return BanditObservation.OVER_ARM_LIMIT
        bandit.add(
            (
                tuple(position.features or () for position in learned),
                indices,
                tuple(min(max(reward, 0.0), 1.0) for reward in impression.rewards[: len(learned)]),
                any(position.propensity < EXPLORED_BELOW for position in shown),
            )
        )
        return BanditObservation.LEARNED

    def snapshot(self, catalog_id: str, closed_through: datetime | None) -> BanditParams:
        """Learns the impressions of ``catalog_id`` still waiting, then returns its bandit: the weights
        and biases solved from everything learned, the state itself, and ``closed_through`` (the
        caller's join watermark, see :class:`BanditParams`). An unknown catalog gives an empty bandit."""
        bandit = self._catalogs.get(catalog_id)
        if bandit is None:
            bandit = self._catalogs[catalog_id] = _CatalogBandit(self._config)
        bandit.learn_pending()
        return bandit.params(closed_through)

    def load(self, catalog_id: str, params: BanditParams | None) -> None:
        """Replaces what is known of ``catalog_id`` with ``params.learning`` (None: forgets the catalog);
        impressions still waiting are dropped. The weights and biases are solved again with this
        learner's ridges; the examination counts are cut or padded to its positions; bundles beyond
        ``max_bundles`` (in bundle id order) are dropped. A bandit over other features than
        :data:`~shared.bandit_features.FEATURES` cannot be resumed: the catalog starts afresh, logged."""
        self._catalogs.pop(catalog_id, None)
        if params is None:
            return
        if tuple(params.feature_names) != FEATURES:
            log.warning(
                "policy of %s: the bandit's features %s are not %s; its contextual bandit starts afresh",
                catalog_id,
                list(params.feature_names),
                list(FEATURES),
            )
            return
        learning = params.learning
        bundle_ids = sorted(learning.bundles)[: self._max_bundles]
        bandit = _CatalogBandit(self._config, {bundle_id: i for i, bundle_id in enumerate(bundle_ids)})
        capacity = max(len(bundle_ids), _MIN_CAPACITY)
        d = len(FEATURES)
        counts, targets, features = np.zeros(capacity), np.zeros(capacity), np.zeros((capacity, d))
        for i, bundle_id in enumerate(bundle_ids):
            sums = learning.bundles[bundle_id]
            counts[i], targets[i], features[i] = sums.count, sums.target, sums.features
        bandit.load(
            BanditState(
                shared_gram=np.array(learning.shared_gram, dtype=np.float64).reshape(d, d),
                shared_target=np.array(learning.shared_target, dtype=np.float64),
                bundle_counts=counts,
                bundle_features=features,
                bundle_target=targets,
                explored_clicks=_fitted(learning.explored_clicks, self._config.slate_size),
                explored_shown=_fitted(learning.explored_shown, self._config.slate_size),
            )
        )
        self._catalogs[catalog_id] = bandit


def _floats(values: FloatArray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _fitted(values: Sequence[float], size: int) -> FloatArray:
    """``values`` cut or padded with zeros to ``size``."""
    out = np.zeros(size)
    kept = min(size, len(values))
    out[:kept] = values[:kept]
    return out


def _padded(state: BanditState, capacity: int) -> BanditState:
    """``state`` with room for ``capacity`` bundles (the new ones never observed)."""
    extra = capacity - state.bundle_counts.shape[0]
    return BanditState(
        shared_gram=state.shared_gram,
        shared_target=state.shared_target,
        bundle_counts=np.pad(state.bundle_counts, (0, extra)),
        bundle_features=np.pad(state.bundle_features, ((0, extra), (0, 0))),
        bundle_target=np.pad(state.bundle_target, (0, extra)),
        explored_clicks=state.explored_clicks,
        explored_shown=state.explored_shown,
    )
