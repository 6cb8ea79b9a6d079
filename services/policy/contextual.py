"""The contextual bandit that chooses which of the ranker's candidate bundles to show: hybrid LinUCB
(Li et al., 2010, "A contextual-bandit approach to personalized news article recommendation",
Algorithm 2) with a per-bundle intercept, debiased for position, exploring by an ε-mixture.

Model: the *attractiveness* of candidate ``a`` for a shopper, i.e. the chance of a click if the
shopper looks at it, is ``z · β + θ_a``, where ``z`` are shared features of the (shopper, bundle)
pair (:data:`FEATURES`) and ``θ_a`` a per-bundle term. Besides the ranker's view (score, rank,
popularity), ``z`` holds the shopper's own feedback on the bundle: how often they were shown it
without clicking, weighted by how likely they were to look at its position (``log1p`` of that), and
whether they clicked it before. That is what lets the policy rotate away from bundles a shopper keeps
ignoring, which a non-adaptive ranker shows again and again. Both are ridge estimates (prior precision
``ridge``), solved jointly; the choice score adds ``alpha`` times the estimate's standard deviation
(the upper confidence bound). The greedy list shows the ``K`` highest scores, best first; with
probability ``epsilon`` a uniform random list is shown instead (:mod:`services.policy.exploration`),
so every position's propensity is exact.

Position: a click at position ``k`` is ``examination_k × attractiveness`` (the position-based click
model), so the learner regresses each position's reward on ``examination_k × z`` and
``examination_k`` as the bundle's own feature (hybrid LinUCB with a scalar arm feature): rewards are
never divided by a small examination estimate, so an early, noisy estimate cannot blow a single click
up into a huge target. ``examination_k`` is estimated from the explored impressions alone (where every
bundle is equally likely at every position, so the click-rate ratio of position ``k`` to position 0
is unbiased), shrunk towards ``1 / (k + 1)`` while there is little evidence and kept within a factor
of 4 of it.

Pure numpy; not thread-safe (one updater thread owns it). State is plain sums, so a refresh can be
bounded (:meth:`HybridLinUCB.bounded_step_towards`) and a snapshot is exact (:meth:`state`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.policy.exploration import EpsilonMixture
from shared.bandit_features import FEATURES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# FEATURES (names and order) are the served ones, shared with the ranker. The simulator fills the fifth
# slot, ``shopper_looks``, with looks *without* a click; the served value counts every look, and
# ``shopper_clicked_before`` tells the clicked ones apart. The maths here depends only on the count and
# order of the features, not on their names.
MAX_EPSILON = 0.3  # the most exploration the bandit allows (a share of uniformly random lists)
PRIOR_STRENGTH = 50.0  # explored impressions' worth of weight on the 1/(k+1) examination prior
PRIOR_CLICK_RATE = 0.05  # click rate at position 0 assumed before any explored impression


@dataclass(frozen=True)
class BanditConfig:
    """Exploration is bounded: ``epsilon`` ≤ ``max_epsilon`` and ``alpha`` ≤ ``max_alpha``."""

    slate_size: int = 5
    epsilon: float = 0.05
    alpha: float = 0.5
    ridge: float = 1.0
    bundle_ridge: float = 5.0
    max_epsilon: float = MAX_EPSILON
    max_alpha: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.epsilon <= self.max_epsilon <= 1:
            raise ValueError(f"need 0 <= epsilon ({self.epsilon}) <= max_epsilon ({self.max_epsilon}) <= 1")
        if not 0 <= self.alpha <= self.max_alpha:
            raise ValueError(f"need 0 <= alpha ({self.alpha}) <= max_alpha ({self.max_alpha})")
        if self.ridge <= 0 or self.bundle_ridge <= 0:
            raise ValueError("ridge and bundle_ridge must be positive")


@dataclass(frozen=True)
class BanditState:
    """The sufficient statistics: everything learned, as sums (so two states can be blended).

    With ``e`` the examination of the position an observation was shown at, ``z`` its features and
    ``y`` its reward: ``shared_gram`` = Σ (e z)(e z)ᵀ [d, d]; ``shared_target`` = Σ y e z [d]; per
    bundle: ``bundle_counts`` = Σ e², ``bundle_features`` = Σ e² z [n_bundles, d], ``bundle_target``
    = Σ e y; clicks and explored impressions per position for the examination estimate.
    """

    shared_gram: FloatArray
    shared_target: FloatArray
    bundle_counts: FloatArray
    bundle_features: FloatArray
    bundle_target: FloatArray
    explored_clicks: FloatArray
    explored_shown: FloatArray


@dataclass(frozen=True)
class SlateChoice:
    """Chosen lists [n, K] (candidate indices), their marginal propensities, and the greedy lists."""

    shown: IntArray
    propensities: FloatArray
    greedy: IntArray


class HybridLinUCB:
    """See the module docstring. ``n_bundles`` bounds bundle ids (ints in ``[0, n_bundles)``)."""

    def __init__(self, config: BanditConfig, n_bundles: int, n_features: int = len(FEATURES)) -> None:
        self.config = config
        self.n_bundles = n_bundles
        self.n_features = n_features
        d = n_features
        self._state = BanditState(
            shared_gram=np.zeros((d, d)),
            shared_target=np.zeros(d),
            bundle_counts=np.zeros(n_bundles),
            bundle_features=np.zeros((n_bundles, d)),
            bundle_target=np.zeros(n_bundles),
            explored_clicks=np.zeros(config.slate_size),
            explored_shown=np.zeros(config.slate_size),
        )
        self._solve()

    def state(self) -> BanditState:
        return self._state

    def load(self, state: BanditState) -> None:
        """Replaces everything learned with ``state`` (as from :meth:`state`)."""
        self._state = state
        self._solve()

    def examination(self) -> FloatArray:
        """Estimated examination probability per position, relative to position 0 (which is 1)."""
        s = self._state
        prior = 1.0 / (np.arange(self.config.slate_size) + 1.0)
        top_rate = (s.explored_clicks[0] + PRIOR_STRENGTH * PRIOR_CLICK_RATE) / (s.explored_shown[0] + PRIOR_STRENGTH)
        rate = (s.explored_clicks + PRIOR_STRENGTH * prior * top_rate) / (s.explored_shown + PRIOR_STRENGTH)
        return np.asarray(np.clip(rate / rate[0], prior / 4.0, 1.0), dtype=np.float64)

    def _solve(self) -> None:
        s, c = self._state, self.config
        denom = s.bundle_counts + c.bundle_ridge
        gram = c.ridge * np.eye(self.n_features) + s.shared_gram
        gram -= np.einsum("bi,bj->ij", s.bundle_features / denom[:, None], s.bundle_features)
        target = s.shared_target - (s.bundle_features * (s.bundle_target / denom)[:, None]).sum(axis=0)
        self._gram_inv = np.linalg.inv(gram)
        self._beta = self._gram_inv @ target
        self._denom = denom
        self._theta = (s.bundle_target - s.bundle_features @ self._beta) / denom

    def weights(self) -> FloatArray:
        """The shared weights β [d] of the latest solve: attractiveness is ``features · β + θ[bundle]``."""
        return np.asarray(self._beta.copy())

    def biases(self) -> FloatArray:
        """The per-bundle terms θ [n_bundles] of the latest solve (0 for a bundle never observed)."""
        return np.asarray(self._theta.copy())

    def predict(self, features: FloatArray, bundles: IntArray) -> tuple[FloatArray, FloatArray]:
        """Mean attractiveness and its standard deviation, for ``features`` [..., d], ``bundles`` [...]."""
        mean = features @ self._beta + self._theta[bundles]
        b_over_a = self._state.bundle_features[bundles] / self._denom[bundles][..., None]
        z_inv = features @ self._gram_inv
        cross = (z_inv * b_over_a).sum(axis=-1)
        b_inv = b_over_a @ self._gram_inv
        variance = (
            (z_inv * features).sum(axis=-1) - 2 * cross + 1.0 / self._denom[bundles] + (b_inv * b_over_a).sum(axis=-1)
        )
        return mean, np.sqrt(np.maximum(variance, 0.0))

    def choose(self, features: FloatArray, bundles: IntArray, rng: np.random.Generator) -> SlateChoice:
        """Lists for ``n`` impressions of ``M`` candidates each: ``features`` [n, M, d], ``bundles`` [n, M]."""
        mean, sd = self.predict(features, bundles)
        greedy = greedy_lists(mean + self.config.alpha * sd, self.config.slate_size)
        mixture = EpsilonMixture(self.config.epsilon, bundles.shape[1], self.config.slate_size)
        shown = mixture.sample(greedy, rng)
        return SlateChoice(shown, mixture.propensities(greedy, shown), greedy)

    def observe(
        self, features: FloatArray, bundles: IntArray, rewards: FloatArray, explored: npt.NDArray[np.bool_]
    ) -> None:
        """Learns from shown lists: ``features`` [n, K, d] and ``bundles`` [n, K] of what was shown,
        ``rewards`` [n, K] per position, ``explored`` [n] True where the list was a uniform one."""
        k = rewards.shape[1]
        s = self._state
        clicks = s.explored_clicks.copy()
        shown = s.explored_shown.copy()
        clicks[:k] += rewards[explored].sum(axis=0)
        shown[:k] += explored.sum()
        self._state = BanditState(
            s.shared_gram, s.shared_target, s.bundle_counts, s.bundle_features, s.bundle_target, clicks, shown
        )
        examination = np.broadcast_to(self.examination()[None, :k], rewards.shape).reshape(-1)
        z = features.reshape(-1, self.n_features) * examination[:, None]
        y = rewards.reshape(-1)
        b = bundles.reshape(-1)
        counts = s.bundle_counts.copy()
        sums = s.bundle_features.copy()
        bundle_target = s.bundle_target.copy()
        np.add.at(counts, b, examination**2)
        np.add.at(sums, b, z * examination[:, None])
        np.add.at(bundle_target, b, y * examination)
        self._state = BanditState(
            s.shared_gram + z.T @ z, s.shared_target + z.T @ y, counts, sums, bundle_target, clicks, shown
        )
        self._solve()

    def bounded_step_towards(self, learned: BanditState, max_share: float) -> BanditState:
        """A guard-railed refresh: the state moves from the current one towards ``learned`` by at most
        ``max_share`` of the way (sums blended linearly), then is loaded and returned."""
        if not 0 < max_share <= 1:
            raise ValueError(f"max_share must be in (0, 1], got {max_share}")
        s = self._state

        def blend(old: FloatArray, new: FloatArray) -> FloatArray:
            return np.asarray(old + max_share * (new - old))

        self.load(
            BanditState(*(blend(getattr(s, name), getattr(learned, name)) for name in BanditState.__dataclass_fields__))
        )
        return self._state


def greedy_lists(scores: FloatArray, k: int) -> IntArray:
    """Indices [n, k] of the ``k`` highest of each row of ``scores`` [n, M], highest first; ties go to the
    lower index (the ranker's order)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, :k].astype(np.int64)
