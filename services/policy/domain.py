"""The policy's core: a Beta-Bernoulli reward-rate model per bundle ("arm"), and its snapshots.

Each showing of a bundle is one trial; its success is the reward the showing earned, a share of one
success in [0, 1] (a click, by default; see the updater for purchases and revenue). Pure: no
transport, storage or clock. The updater feeds it events and publishes its snapshots; the ranker turns
a snapshot into ``ctr_weight * alpha / (alpha + beta)`` added to each bundle's score. A snapshot of the
kind :data:`CONTEXTUAL_BANDIT` also carries a contextual bandit (:mod:`services.policy.bandit`), which
the ranker then serves instead of the click rates; the arms keep learning beside it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from services.policy.bandit import BanditParams

POLICY_NAME = "beta_ctr"
BANDIT_POLICY_NAME = "hybrid_linucb"
# What the updater publishes (BUNDLEWISE_POLICY_KIND): the arms' click rates, or a contextual bandit too.
CLICK_RATES = "click_rates"
CONTEXTUAL_BANDIT = "contextual_bandit"
POLICY_KINDS = (CLICK_RATES, CONTEXTUAL_BANDIT)
SOFTMAX = "softmax"
EPSILON_MIXTURE = "epsilon_mixture"
EXPLORATIONS = (SOFTMAX, EPSILON_MIXTURE)

# (topic, partition) of the event log.
LogPartition = tuple[str, int]


@dataclass(frozen=True)
class Arm:
    """What is known about one bundle: raw counts and the Beta posterior of its reward rate.

    ``reward`` is the sum of the rewards its showings earned (each in [0, 1]); None when it equals
    ``clicks``, as when learning from clicks alone, and in snapshots written before rewards existed.
    """

    bundle_id: str
    impressions: int
    clicks: int
    alpha: float
    beta: float
    reward: float | None = None

    @property
    def learned_reward(self) -> float:
        """``reward``, or ``clicks`` where it is None."""
        return float(self.clicks) if self.reward is None else self.reward

    @property
    def expected_click_rate(self) -> float:
        """E[Beta(alpha, beta)], in [0, 1]: the expected reward per showing (the click rate by default)."""
        return self.alpha / (self.alpha + self.beta)


@dataclass(frozen=True)
class PolicyParams:
    """Everything a published policy carries.

    ``arms`` is sorted by bundle id. ``log_positions`` maps each (topic, partition) of the event log to
    the offset of the first event *not* counted in ``arms``; empty when nothing was read yet.
    ``window_positions`` maps each (topic, partition) to the offset from which the updater reads the log
    again on start to rebuild its join window (impressions still open when this was published; see
    ``services/policy/updater.py``); empty when unknown.
    ``exploration`` is how the ranker explores (:data:`SOFTMAX` at ``temperature``, or
    :data:`EPSILON_MIXTURE` with ``epsilon``: exact marginal propensities, see
    ``proto/bundlewise/policy/v1/policy.proto``).
    ``bandit`` is the contextual bandit the ranker serves instead of the click rates (its exploration
    is then :data:`EPSILON_MIXTURE`); None for a policy of click rates.
    """

    temperature: float
    ctr_weight: float
    prior_alpha: float
    prior_beta: float
    arms: tuple[Arm, ...]
    log_positions: Mapping[LogPartition, int] = field(default_factory=dict)
    exploration: str = SOFTMAX
    epsilon: float = 0.0
    window_positions: Mapping[LogPartition, int] = field(default_factory=dict)
    bandit: BanditParams | None = None

    @property
    def kind(self) -> str:
        """:data:`CONTEXTUAL_BANDIT` when the params carry a bandit, else :data:`CLICK_RATES`."""
        return CLICK_RATES if self.bandit is None else CONTEXTUAL_BANDIT


def policy_name(params: PolicyParams) -> str:
    """The name a snapshot of ``params`` is published under."""
    return POLICY_NAME if params.bandit is None else BANDIT_POLICY_NAME


@dataclass(frozen=True)
class Snapshot:
    """One published version of a catalog's policy."""

    catalog_id: str
    version: int
    policy_name: str
    params: PolicyParams
    note: str
    created_at: datetime


class Observation(StrEnum):
    """What became of one observed (impression or outcome, bundle) pair."""

    COUNTED = "counted"
    DUPLICATE = "duplicate"
    OVER_ARM_LIMIT = "over_arm_limit"


class RecentKeys:
    """The last ``capacity`` keys added, for membership tests; the oldest is forgotten first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._order: deque[int] = deque()
        self._members: set[int] = set()

    def add(self, key: Hashable) -> bool:
        """Remembers ``key``; returns False if it was already among the remembered ones."""
        # Hashes, not the keys themselves, bound the memory per entry; a 64-bit collision within the
        # window is negligible next to the duplicates it catches.
        digest = hash(key)
        if digest in self._members:
            return False
        if len(self._order) >= self._capacity:
            self._members.discard(self._order.popleft())
        self._order.append(digest)
        self._members.add(digest)
        return True


@dataclass
class _Counts:
    impressions: int = 0
    clicks: int = 0
    reward: float = 0.0


class BetaArms:
    """Per-catalog, per-bundle impression, click and reward counts with a shared Beta prior.

    A bundle's posterior is ``alpha = prior_alpha + reward`` and
    ``beta = prior_beta + max(impressions - reward, 0)``, where ``reward`` sums the rewards of its
    showings, each a share of one success in [0, 1] (a click is 1). An (impression id, bundle) pair counts
    at most once as an impression through :meth:`observe_impression` while it is among the last
    ``dedup_window`` pairs seen, so a repeated impression does not count twice; :meth:`credit` does not
    deduplicate: its caller credits each outcome once (the updater's join). A catalog learns at most
    ``max_arms`` bundles; observations of further bundles are dropped.

    Not thread-safe: one updater thread owns it.
    """

    def __init__(
        self,
        temperature: float,
        ctr_weight: float,
        prior_alpha: float,
        prior_beta: float,
        max_arms: int,
        dedup_window: int,
        exploration: str = SOFTMAX,
        epsilon: float = 0.0,
    ) -> None:
        if prior_alpha <= 0 or prior_beta <= 0:
            raise ValueError(f"the Beta prior must be positive, got ({prior_alpha}, {prior_beta})")
        if exploration not in EXPLORATIONS or not 0 <= epsilon <= 1:
            raise ValueError(f"exploration must be one of {EXPLORATIONS} with epsilon in [0, 1]")
        self._exploration = exploration
        self._epsilon = epsilon
        self._temperature = temperature
        self._ctr_weight = ctr_weight
        self._prior_alpha = prior_alpha
        self._prior_beta = prior_beta
        self._max_arms = max_arms
        self._arms: dict[str, dict[str, _Counts]] = {}
        self._seen_impressions = RecentKeys(dedup_window)

    def observe_impression(self, catalog_id: str, impression_id: str, bundle_id: str) -> Observation:
        """Counts one showing of ``bundle_id`` in impression ``impression_id``."""
        # The updater's join ignores a repeated impression id only while it remembers the impression (a
        # window past its close, in event time); this also catches a later repeat, while the pair is
        # among the last ``dedup_window``.
        if not self._seen_impressions.add((catalog_id, impression_id, bundle_id)):
            return Observation.DUPLICATE
        counts = self._counts(catalog_id, bundle_id)
        if counts is None:
            return Observation.OVER_ARM_LIMIT
        counts.impressions += 1
        return Observation.COUNTED

    def credit(self, catalog_id: str, bundle_id: str, reward: float, clicks: int = 0) -> Observation:
        """Adds ``reward`` (the growth of one showing's reward, which stays within [0, 1] in all) and
        ``clicks`` to ``bundle_id``'s arm, without deduplication.

        Raises:
            ValueError: ``reward`` is outside [0, 1] or ``clicks`` is negative.
        """
        if not 0.0 <= reward <= 1.0 or clicks < 0:
            raise ValueError(f"a credit adds a reward in [0, 1] and clicks >= 0, got {reward} and {clicks}")
        counts = self._counts(catalog_id, bundle_id)
        if counts is None:
            return Observation.OVER_ARM_LIMIT
        counts.clicks += clicks
        counts.reward += reward
        return Observation.COUNTED

    def catalogs(self) -> list[str]:
        """Catalogs with at least one arm, sorted."""
        return sorted(catalog for catalog, arms in self._arms.items() if arms)

    def snapshot(self, catalog_id: str) -> PolicyParams:
        """The current posterior of every arm of ``catalog_id`` (no arms for an unknown catalog)."""
        arms = self._arms.get(catalog_id, {})
        return PolicyParams(
            temperature=self._temperature,
            ctr_weight=self._ctr_weight,
            prior_alpha=self._prior_alpha,
            prior_beta=self._prior_beta,
            arms=tuple(self._arm(bundle_id, arms[bundle_id]) for bundle_id in sorted(arms)),
            exploration=self._exploration,
            epsilon=self._epsilon,
        )

    def load(self, catalog_id: str, params: PolicyParams) -> None:
        """Replaces what is known of ``catalog_id`` with the counts in ``params``.

        The counts (reward included) carry over; the posterior is recomputed with this learner's prior,
        so a prior changed between runs applies to everything learned so far. Arms beyond ``max_arms``
        are dropped.
        """
        self._arms[catalog_id] = {
            arm.bundle_id: _Counts(arm.impressions, arm.clicks, arm.learned_reward)
            for arm in params.arms[: self._max_arms]
        }

    def _counts(self, catalog_id: str, bundle_id: str) -> _Counts | None:
        arms = self._arms.setdefault(catalog_id, {})
        counts = arms.get(bundle_id)
        if counts is None:
            if len(arms) >= self._max_arms:
                return None
            counts = arms[bundle_id] = _Counts()
        return counts

    def _arm(self, bundle_id: str, counts: _Counts) -> Arm:
        return Arm(
            bundle_id=bundle_id,
            impressions=counts.impressions,
            clicks=counts.clicks,
            alpha=self._prior_alpha + counts.reward,
            beta=self._prior_beta + max(counts.impressions - counts.reward, 0.0),
            reward=None if counts.reward == counts.clicks else counts.reward,
        )
