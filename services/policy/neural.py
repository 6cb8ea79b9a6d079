"""The deep option for choosing which of the ranker's candidate bundles to show: a small torch network
trained online under the position-based click model, exploring by the same ε-mixture as the bandit
(:mod:`services.policy.contextual`), so both plug into the same interface and log the same
propensities.

Model: a click at position ``k`` happens with probability ``examination_k × attraction``, where
``attraction = sigmoid(mlp(z) + b_bundle)``: ``z`` the (shopper, bundle) features of
:data:`shared.bandit_features.FEATURES`, ``mlp`` two hidden ReLU layers, ``b_bundle`` a learned
per-bundle bias. Unlike the bandit's linear score, the network can learn interactions between the
features (ranker score × the shopper's own looks and clicks, say).
``examination_0`` is 1. The others are learned with the network, starting at ``1 / (k + 1)`` and kept
within 4× of it, as the bandit keeps its estimate. Nothing is divided by an examination estimate, so a
rare click deep in the list cannot become a huge target.

Training is online: every observed impression adds one row per shown position to a replay buffer (the
latest ``replay_capacity`` rows), then ``steps_per_observe`` Adam steps on minibatches drawn uniformly
from it minimise the clicks' binary cross-entropy. A call to :meth:`NeuralSlateLearner.observe` is a
refresh, as a published snapshot would be.

Choice: the greedy list is the ``K`` candidates of highest predicted attraction, best first. With
probability ``epsilon`` (at most ``max_epsilon``) a uniformly random list is shown instead. Every shown
bundle's marginal propensity is then exact, ``(1 − ε) · [greedy there] + ε / M``. A softmax
(Plackett-Luce) list was not used: its marginals have no closed form, and the position-based
off-policy estimators need them (docs/policy.md).

Deterministic: initial weights and minibatches come from ``seed``; lists from the caller's generator.
CPU; callers set ``torch.set_num_threads``. Not thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from services.policy.contextual import SlateChoice, greedy_lists
from services.policy.exploration import EpsilonMixture
from shared.bandit_features import FEATURES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

INITIAL_ATTRACTION = 0.05  # the network's prediction before any click, as the bandit's prior click rate
EXAMINATION_RANGE = 4.0  # examination_k stays within this factor of 1 / (k + 1)


@dataclass(frozen=True)
class NeuralConfig:
    """Exploration is bounded: ``epsilon`` ≤ ``max_epsilon``; the network is small by design (a
    simulator run of 100,000 impressions takes seconds on one thread)."""

    slate_size: int = 5
    epsilon: float = 0.05
    max_epsilon: float = 0.3
    hidden: int = 32
    learning_rate: float = 3e-3
    bundle_bias_l2: float = 1.0
    steps_per_observe: int = 30
    minibatch: int = 512
    replay_capacity: int = 200_000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.epsilon <= self.max_epsilon <= 1:
            raise ValueError(f"need 0 <= epsilon ({self.epsilon}) <= max_epsilon ({self.max_epsilon}) <= 1")
        if self.slate_size < 1 or self.hidden < 1:
            raise ValueError(f"slate_size ({self.slate_size}) and hidden ({self.hidden}) must be at least 1")
        if self.learning_rate <= 0 or self.bundle_bias_l2 < 0:
            raise ValueError(
                f"need learning_rate ({self.learning_rate}) > 0 and bundle_bias_l2 ({self.bundle_bias_l2}) >= 0"
            )
        if self.steps_per_observe < 0 or self.minibatch < 1 or self.replay_capacity < self.minibatch:
            raise ValueError(
                f"need steps_per_observe ({self.steps_per_observe}) >= 0 and "
                f"1 <= minibatch ({self.minibatch}) <= replay_capacity ({self.replay_capacity})"
            )


class _ClickModel(nn.Module):
    """Attraction logits of (features, bundle) pairs and the examination of each position."""

    def __init__(self, n_features: int, n_bundles: int, slate_size: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )
        last = self.mlp[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():
            last.bias.fill_(float(np.log(INITIAL_ATTRACTION / (1 - INITIAL_ATTRACTION))))
        self.bundle_bias = nn.Parameter(torch.zeros(n_bundles))
        # Positions 1.. : examination = prior · RANGE ** tanh(raw), capped at 1; raw 0 is the prior.
        self.examination_raw = nn.Parameter(torch.zeros(slate_size - 1))
        self.prior = 1.0 / (torch.arange(slate_size, dtype=torch.float32) + 1.0)

    def logits(self, features: torch.Tensor, bundles: torch.Tensor) -> torch.Tensor:
        scores: torch.Tensor = self.mlp(features).squeeze(-1)
        return scores + self.bundle_bias[bundles]

    def examination(self) -> torch.Tensor:
        prior = self.prior
        learned = prior[1:] * EXAMINATION_RANGE ** torch.tanh(self.examination_raw)
        return torch.cat([prior[:1], torch.clamp(learned, max=1.0)])


class NeuralSlateLearner:
    """See the module docstring. ``n_bundles`` bounds bundle ids (ints in ``[0, n_bundles)``); same
    ``choose``/``observe`` contract as :class:`~services.policy.contextual.HybridLinUCB`."""

    def __init__(self, config: NeuralConfig, n_bundles: int, n_features: int = len(FEATURES)) -> None:
        self.config = config
        self.n_features = n_features
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self._model = _ClickModel(n_features, n_bundles, config.slate_size, config.hidden)
        self._optimiser = torch.optim.Adam(self._model.parameters(), lr=config.learning_rate)
        self._batches = torch.Generator().manual_seed(config.seed + 1)
        capacity = config.replay_capacity
        self._features = torch.zeros(capacity, n_features)
        self._bundles = torch.zeros(capacity, dtype=torch.int64)
        self._positions = torch.zeros(capacity, dtype=torch.int64)
        self._clicks = torch.zeros(capacity)
        self._rows = 0  # rows ever added; the buffer holds the latest min(rows, capacity)

    def examination(self) -> FloatArray:
        """Estimated examination probability per position, relative to position 0 (which is 1)."""
        with torch.no_grad():
            return self._model.examination().numpy().astype(np.float64)

    def attraction(self, features: FloatArray, bundles: IntArray) -> FloatArray:
        """Predicted click probability once looked at, for ``features`` [..., d] and ``bundles`` [...]."""
        with torch.no_grad():
            logits = self._model.logits(torch.from_numpy(features).float(), torch.from_numpy(bundles))
            return torch.sigmoid(logits).numpy().astype(np.float64)

    def choose(self, features: FloatArray, bundles: IntArray, rng: np.random.Generator) -> SlateChoice:
        """Lists for ``n`` impressions of ``M`` candidates each: ``features`` [n, M, d], ``bundles`` [n, M]."""
        greedy = greedy_lists(self.attraction(features, bundles), self.config.slate_size)
        mixture = EpsilonMixture(self.config.epsilon, bundles.shape[1], self.config.slate_size)
        shown = mixture.sample(greedy, rng)
        return SlateChoice(shown, mixture.propensities(greedy, shown), greedy)

    def observe(
        self, features: FloatArray, bundles: IntArray, rewards: FloatArray, explored: npt.NDArray[np.bool_]
    ) -> None:
        """Learns from shown lists: ``features`` [n, K, d] and ``bundles`` [n, K] of what was shown,
        ``rewards`` [n, K] per position (clicks, 0 or 1). ``explored`` is accepted for the bandit's
        contract; the likelihood uses every impression, explored or not."""
        n, k = rewards.shape
        self._append(
            torch.from_numpy(features.reshape(n * k, self.n_features)).float(),
            torch.from_numpy(bundles.reshape(-1)),
            torch.arange(k).repeat(n),
            torch.from_numpy(rewards.reshape(-1)).float(),
        )
        held = min(self._rows, self.config.replay_capacity)
        for _ in range(self.config.steps_per_observe):
            rows = torch.randint(held, (min(self.config.minibatch, held),), generator=self._batches)
            self._step(rows)

    def _append(
        self, features: torch.Tensor, bundles: torch.Tensor, positions: torch.Tensor, clicks: torch.Tensor
    ) -> None:
        capacity = self.config.replay_capacity
        skipped = max(int(clicks.shape[0]) - capacity, 0)  # rows the buffer could not hold anyway
        self._rows += skipped
        features, bundles, positions, clicks = (
            features[skipped:],
            bundles[skipped:],
            positions[skipped:],
            clicks[skipped:],
        )
        slots = (self._rows + torch.arange(clicks.shape[0])) % capacity
        self._features[slots] = features
        self._bundles[slots] = bundles
        self._positions[slots] = positions
        self._clicks[slots] = clicks
        self._rows += int(clicks.shape[0])

    def _step(self, rows: torch.Tensor) -> None:
        model = self._model
        bundles = self._bundles[rows]
        log_attraction = nn.functional.logsigmoid(model.logits(self._features[rows], bundles))
        log_click = torch.log(model.examination()[self._positions[rows]]) + log_attraction
        # log(1 - p) from log p, stable near p = 1.
        log_no_click = torch.log1p(-torch.exp(torch.clamp(log_click, max=-1e-6)))
        clicks = self._clicks[rows]
        loss = -(clicks * log_click + (1 - clicks) * log_no_click).mean()
        loss = loss + self.config.bundle_bias_l2 * model.bundle_bias[bundles].pow(2).mean()
        self._optimiser.zero_grad()
        torch.autograd.backward(loss)
        self._optimiser.step()
