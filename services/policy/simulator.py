"""A shopper simulator built from Youshu, for testing and benchmarking bundle-selection policies.

The world (:func:`youshu_world`):

- **Shoppers** are Youshu's test-split users (2,959). A shopper's true preferences are their
  ``user_bundle_test`` pairs, which no ranker trained on ``user_bundle_train`` has seen.
- **Candidates**: for every shopper, the ``pool_size`` bundles the non-adaptive ranker scores highest,
  leaving out the shopper's training bundles (as the ranker leaves out what a shopper already has).
- **Clicks** follow the position-based model: a shopper looks at position ``k`` with probability
  ``examination_k = 1 / (k + 1) ** position_bias`` and, having looked, clicks a bundle with probability
  ``preferred_click_rate`` if it is one of their test bundles, else ``base_click_rate``. Positions are
  independent. The reward of an impression is its number of clicks.
- **Satiation**: after a click, a shopper's attraction to that bundle is multiplied by
  ``1 - satiation`` for the rest of the stream (0, the default: preferences are static; 1: a clicked
  bundle never draws a click again, as if bought).

Every setting is in :class:`ShopperModel`. Policies only see what a live policy would: the ranker's
scores and ranks of the candidates, training-split popularity, and the clicks on what they showed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch

from services.policy.contextual import BanditConfig, HybridLinUCB, SlateChoice, greedy_lists
from services.policy.exploration import EpsilonMixture
from services.policy.neural import NeuralConfig, NeuralSlateLearner
from services.policy.ope_estimators import LoggedSlates, estimate_all
from services.ranker.offline.data import BundleRecData

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# Scores [n_users, n_bundles] of the non-adaptive ranker for the given user ids.
UserScorer = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ShopperModel:
    """How simulated shoppers behave. ``position_bias`` 0 means every position is looked at."""

    pool_size: int = 30
    slate_size: int = 5
    position_bias: float = 1.0
    base_click_rate: float = 0.02
    preferred_click_rate: float = 0.5
    satiation: float = 0.0

    def examination(self) -> FloatArray:
        return np.asarray(1.0 / (np.arange(self.slate_size) + 1.0) ** self.position_bias)


@dataclass(frozen=True)
class World:
    """The simulator's ground truth and what policies may see; row ``u`` is shopper ``u``.

    ``candidates`` [U, M] bundle ids, best ranker score first; ``features`` [U, M, d] policy features
    (:data:`shared.bandit_features.FEATURES`); ``attraction`` [U, M] true click probability when
    looked at (hidden from policies).
    """

    model: ShopperModel
    user_ids: IntArray
    candidates: IntArray
    features: FloatArray
    attraction: FloatArray
    n_bundles: int

    @property
    def n_users(self) -> int:
        return int(self.candidates.shape[0])

    def click_probabilities(self, users: IntArray, shown: IntArray, attraction: FloatArray | None = None) -> FloatArray:
        """P(click) [n, K] of each shown candidate index at its position (``attraction``: the current
        attraction when satiation changed it, else the world's)."""
        current = self.attraction if attraction is None else attraction
        return current[users[:, None], shown] * self.model.examination()[None, : shown.shape[1]]

    def clicks(self, users: IntArray, shown: IntArray, rng: np.random.Generator) -> FloatArray:
        return (rng.random(shown.shape) < self.click_probabilities(users, shown)).astype(np.float64)

    def value_of_marginals(self, marginals: FloatArray, users: IntArray | None = None) -> float:
        """Exact expected clicks per impression of a policy with marginals [U, K, M] over all shoppers
        (or [len(users), K, M] for ``users``), shoppers drawn uniformly."""
        rows = np.arange(self.n_users) if users is None else users
        examination = self.model.examination()[None, :, None]
        return float((marginals * examination * self.attraction[rows][:, None, :]).sum(axis=(1, 2)).mean())

    def oracle_lists(self) -> IntArray:
        """Every shopper's best list: the most attractive candidates, best first (ties: ranker order)."""
        return greedy_lists(self.attraction, self.model.slate_size)

    def ranker_lists(self) -> IntArray:
        return np.tile(np.arange(self.model.slate_size, dtype=np.int64), (self.n_users, 1))


def youshu_world(data: BundleRecData, scorer: UserScorer, model: ShopperModel) -> World:
    """The world of the module docstring, with candidates and scores from ``scorer``."""
    users = data.test.users
    scores = scorer(users).to(torch.float64).clone()
    rows, bundles = data.test.excluded_rows, data.test.excluded_bundles
    scores[rows, bundles] = -torch.inf
    top = torch.topk(scores, model.pool_size, dim=1)
    candidates = top.indices.numpy().astype(np.int64)
    candidate_scores = top.values.numpy()
    preferred = torch.zeros(users.numel(), data.n_bundles, dtype=torch.bool)
    preferred[data.test.positive_rows, data.test.positive_bundles] = True
    is_preferred = np.take_along_axis(preferred.numpy(), candidates, axis=1)
    attraction = np.where(is_preferred, model.preferred_click_rate, model.base_click_rate)
    popularity = data.popularity_prior().numpy().astype(np.float64)
    return World(
        model=model,
        user_ids=users.numpy().astype(np.int64),
        candidates=candidates,
        features=candidate_features(candidate_scores, popularity[candidates]),
        attraction=attraction,
        n_bundles=data.n_bundles,
    )


def candidate_features(scores: FloatArray, log_popularity: FloatArray) -> FloatArray:
    """[n, M, 6] features of :data:`~shared.bandit_features.FEATURES` from the ranker's scores and
    the candidates' log(1 + training purchases) [n, M], each row's candidates best score first; the
    shopper-feedback features start at 0 (a :class:`LearningPolicy` fills them in as it learns).

    The score is standardised within the shopper's candidates (ranker scores have no common scale
    across shoppers); popularity is scaled to about [0, 1].
    """
    n, m = scores.shape
    centred = scores - scores.mean(axis=1, keepdims=True)
    spread = scores.std(axis=1, keepdims=True)
    standardised = centred / np.where(spread > 0, spread, 1.0)
    reciprocal_rank = np.broadcast_to(1.0 / (np.arange(m) + 1.0), (n, m))
    zeros = np.zeros((n, m))
    return np.stack([np.ones((n, m)), standardised, log_popularity / 8.0, reciprocal_rank, zeros, zeros], axis=2)


# --- policies over a World -------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """Shown candidate indices [n, K], their marginal propensities, and which were uniform lists."""

    shown: IntArray
    propensities: FloatArray
    explored: npt.NDArray[np.bool_]


class FixedListPolicy:
    """A non-learning policy: each shopper's fixed list (ranker or oracle), with optional ε-mixture."""

    def __init__(self, name: str, lists: IntArray, pool_size: int, epsilon: float = 0.0) -> None:
        self.name = name
        self._lists = lists
        self._mixture = EpsilonMixture(epsilon, pool_size, lists.shape[1])

    def choose(self, users: IntArray, rng: np.random.Generator) -> Choice:
        greedy = self._lists[users]
        shown = self._mixture.sample(greedy, rng)
        explored = ~(shown == greedy).all(axis=1)
        return Choice(shown, self._mixture.propensities(greedy, shown), explored)

    def observe(self, users: IntArray, choice: Choice, rewards: FloatArray) -> None:
        """Learns nothing."""


class RandomPolicy(FixedListPolicy):
    def __init__(self, n_users: int, pool_size: int, slate_size: int) -> None:
        lists = np.tile(np.arange(slate_size, dtype=np.int64), (n_users, 1))
        super().__init__("random", lists, pool_size, epsilon=1.0)


class ShopperFeedback:
    """Each shopper's own feedback on each of their candidates, the last two
    :data:`~shared.bandit_features.FEATURES`: looks without a click (weighted by the examination of the
    position shown at; ``log1p`` of that sum) and whether they clicked it before. A learning policy keeps
    one and updates it after each batch.

    The served ``shopper_looks`` (the online store's, :mod:`shared.bandit_features`) counts every look,
    clicked or not, and ``shopper_clicked_before`` beside it tells the clicked ones apart. The simulator
    keeps its looks without a click in that slot (its figures were measured so); the two differ only for
    bundles the shopper clicked."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._looks = np.zeros(world.candidates.shape)
        self._clicked = np.zeros(world.candidates.shape)

    def features(self, users: IntArray) -> FloatArray:
        """The world's features [n, M, d] of ``users``' candidates, with this feedback filled in."""
        features = self._world.features[users].copy()
        features[:, :, 4] = np.log1p(self._looks[users])
        features[:, :, 5] = self._clicked[users] > 0
        return features

    def record(self, users: IntArray, shown: IntArray, rewards: FloatArray, examination: FloatArray) -> None:
        """Adds the clicks [n, K] on ``shown`` [n, K], a look without a click counting ``examination_k``."""
        rows = np.broadcast_to(users[:, None], shown.shape)
        looks = examination[None, : rewards.shape[1]] * (rewards == 0)
        np.add.at(self._looks, (rows, shown), looks)
        np.add.at(self._clicked, (rows, shown), rewards)


class SlateLearner(Protocol):
    """What :class:`LearningPolicy` drives: :class:`~services.policy.contextual.HybridLinUCB` and
    :class:`~services.policy.neural.NeuralSlateLearner` both are."""

    def choose(self, features: FloatArray, bundles: IntArray, rng: np.random.Generator) -> SlateChoice: ...

    def observe(
        self, features: FloatArray, bundles: IntArray, rewards: FloatArray, explored: npt.NDArray[np.bool_]
    ) -> None: ...

    def examination(self) -> FloatArray: ...


class LearningPolicy:
    """A learner over a world's candidates, with the shopper-feedback features it keeps filling in;
    it learns after each batch."""

    name: str
    learner: SlateLearner

    def __init__(self, world: World, learner: SlateLearner) -> None:
        self._world = world
        self.learner = learner
        self._feedback = ShopperFeedback(world)

    def _features(self, users: IntArray) -> FloatArray:
        return self._feedback.features(users)

    def choose(self, users: IntArray, rng: np.random.Generator) -> Choice:
        chosen = self.learner.choose(self._features(users), self._world.candidates[users], rng)
        explored = ~(chosen.shown == chosen.greedy).all(axis=1)
        return Choice(chosen.shown, chosen.propensities, explored)

    def observe(self, users: IntArray, choice: Choice, rewards: FloatArray) -> None:
        rows = users[:, None]
        features = self._features(users)[np.arange(users.shape[0])[:, None], choice.shown]
        self.learner.observe(features, self._world.candidates[rows, choice.shown], rewards, choice.explored)
        self._feedback.record(users, choice.shown, rewards, self.learner.examination())


class BanditPolicy(LearningPolicy):
    """:class:`~services.policy.contextual.HybridLinUCB` over a world's candidates."""

    name = "contextual_bandit"
    learner: HybridLinUCB

    def __init__(self, world: World, config: BanditConfig) -> None:
        super().__init__(world, HybridLinUCB(config, world.n_bundles))


class NeuralPolicy(LearningPolicy):
    """:class:`~services.policy.neural.NeuralSlateLearner` over a world's candidates, with the bandit's
    features (shopper feedback included)."""

    name = "neural"
    learner: NeuralSlateLearner

    def __init__(self, world: World, config: NeuralConfig) -> None:
        super().__init__(world, NeuralSlateLearner(config, world.n_bundles, world.features.shape[2]))


class SlatePolicy(Protocol):
    """What :func:`simulate` drives."""

    name: str

    def choose(self, users: IntArray, rng: np.random.Generator) -> Choice: ...

    def observe(self, users: IntArray, choice: Choice, rewards: FloatArray) -> None: ...


@dataclass
class Run:
    """Rewards of one policy over one simulated stream: clicks per batch, and the expected clicks."""

    policy: str
    batch_rewards: list[float] = field(default_factory=list)
    batch_expected: list[float] = field(default_factory=list)
    impressions: int = 0

    @property
    def total_reward(self) -> float:
        return float(sum(self.batch_rewards))

    @property
    def total_expected(self) -> float:
        return float(sum(self.batch_expected))

    def cumulative_expected(self) -> FloatArray:
        return np.cumsum(self.batch_expected)


def simulate(
    world: World,
    policy: SlatePolicy,
    impressions: int,
    batch_size: int,
    seed: int,
) -> Run:
    """``impressions`` impressions in batches of ``batch_size`` (the policy learns after each batch,
    as a refreshed snapshot would); shoppers are drawn uniformly with ``seed``, the same stream for
    every policy given the same seed. ``batch_expected`` is the exact expected clicks of what was shown,
    the low-noise figure to compare policies by."""
    shoppers = np.random.default_rng(seed)
    choices = np.random.default_rng(seed + 1_000_003)
    run = Run(policy.name)
    attraction = world.attraction.copy()
    while run.impressions < impressions:
        n = min(batch_size, impressions - run.impressions)
        users = shoppers.integers(0, world.n_users, size=n)
        choice = policy.choose(users, choices)
        probabilities = world.click_probabilities(users, choice.shown, attraction)
        rewards = (shoppers.random(choice.shown.shape) < probabilities).astype(np.float64)
        if world.model.satiation > 0:
            rows = np.broadcast_to(users[:, None], choice.shown.shape)
            kept = np.where(rewards > 0, 1.0 - world.model.satiation, 1.0)
            np.multiply.at(attraction, (rows, choice.shown), kept)
        policy.observe(users, choice, rewards)
        run.batch_rewards.append(float(rewards.sum()))
        run.batch_expected.append(float(probabilities.sum()))
        run.impressions += n
    return run


def standard_policies(world: World, bandit: BanditConfig, neural: NeuralConfig | None = None) -> list[SlatePolicy]:
    """The non-adaptive ranker, random, oracle, the contextual bandit and (given ``neural``) the neural
    policy, fresh."""
    m = world.model
    policies: list[SlatePolicy] = [
        FixedListPolicy("ranker", world.ranker_lists(), m.pool_size),
        RandomPolicy(world.n_users, m.pool_size, m.slate_size),
        FixedListPolicy("oracle", world.oracle_lists(), m.pool_size),
        BanditPolicy(world, bandit),
    ]
    if neural is not None:
        policies.append(NeuralPolicy(world, neural))
    return policies


# --- off-policy evaluation against the simulated truth ------------------------------------------------


@dataclass(frozen=True)
class MixtureTarget:
    """A candidate policy for the OPE check: the ε-mixture around each shopper's fixed list."""

    name: str
    lists: IntArray
    epsilon: float


def ope_targets(world: World) -> list[MixtureTarget]:
    """Candidates from near the logging policy (the ranker with ε = 0.3) to far from it."""
    ranker, oracle = world.ranker_lists(), world.oracle_lists()
    shifted = np.tile(np.arange(world.model.slate_size, 2 * world.model.slate_size, dtype=np.int64), (world.n_users, 1))
    return [
        MixtureTarget("ranker_eps0.3 (the logger)", ranker, 0.3),
        MixtureTarget("ranker_eps0.1", ranker, 0.1),
        MixtureTarget("random", ranker, 1.0),
        MixtureTarget("ranker_ranks_6_to_10", shifted, 0.1),
        MixtureTarget("oracle_eps0.1", oracle, 0.1),
    ]


@dataclass(frozen=True)
class CoverageResult:
    """Per target and estimator: share of runs whose 95% interval covered the truth, mean error."""

    target: str
    truth: float
    estimator: str
    coverage: float
    mean_error: float
    mean_abs_error: float
    mean_width: float
    runs: int


def ope_coverage(
    world: World,
    runs: int,
    impressions: int,
    seed: int,
    logging_epsilon: float = 0.3,
    targets: list[MixtureTarget] | None = None,
) -> list[CoverageResult]:
    """Logs ``impressions`` impressions of the ranker's ε-mixture ``runs`` times and estimates each
    target's value with every estimator; compares each 95% interval with the exact value."""
    m = world.model
    logger = EpsilonMixture(logging_epsilon, m.pool_size, m.slate_size)
    chosen_targets = ope_targets(world) if targets is None else targets
    mixtures = [EpsilonMixture(t.epsilon, m.pool_size, m.slate_size) for t in chosen_targets]
    truths = [world.value_of_marginals(mx.marginals(t.lists)) for t, mx in zip(chosen_targets, mixtures, strict=True)]
    rng = np.random.default_rng(seed)
    # An imperfect reward model for the doubly robust estimator: examination × the ranker's rank prior.
    examination = m.examination()
    model_attraction = 0.02 + 0.1 / (np.arange(m.pool_size) + 1.0)
    covered: dict[tuple[int, str], list[tuple[bool, float, float]]] = {}
    for _ in range(runs):
        users = rng.integers(0, world.n_users, size=impressions)
        greedy = world.ranker_lists()[users]
        shown = logger.sample(greedy, rng)
        rewards = world.clicks(users, shown, rng)
        logged_p = logger.propensities(greedy, shown)
        predicted = examination[None, :] * model_attraction[shown]
        for index, (target, mixture) in enumerate(zip(chosen_targets, mixtures, strict=True)):
            target_lists = target.lists[users]
            marginals = mixture.marginals(target_lists)
            data = LoggedSlates(
                rewards=rewards,
                logging_propensities=logged_p,
                target_propensities=np.take_along_axis(marginals, shown[:, :, None], axis=2)[:, :, 0],
                shown=np.ones(shown.shape, dtype=bool),
                pi_weights=logger.pi_weights(greedy, shown, marginals),
                predicted=predicted,
                target_model_value=(marginals * (examination[:, None] * model_attraction[None, :])).sum(axis=(1, 2)),
            )
            for name, estimate in estimate_all(data, ("ips", "snips", "pi", "snpi", "dr")).items():
                covered.setdefault((index, name), []).append(
                    (estimate.covers(truths[index]), estimate.value - truths[index], estimate.high - estimate.low)
                )
    results = []
    for (index, name), outcomes in covered.items():
        hits, errors, widths = zip(*outcomes, strict=True)
        results.append(
            CoverageResult(
                target=chosen_targets[index].name,
                truth=truths[index],
                estimator=name,
                coverage=float(np.mean(hits)),
                mean_error=float(np.mean(errors)),
                mean_abs_error=float(np.mean(np.abs(errors))),
                mean_width=float(np.mean(widths)),
                runs=runs,
            )
        )
    return results
