"""Bounded exploration with exact per-position propensities: the ε-mixture of a greedy list and a
uniformly random one.

With probability ``1 − ε`` an impression shows the policy's greedy list; with probability ``ε`` it
shows ``K`` bundles drawn uniformly without replacement from the ``M`` candidates, in random order.
The marginal probability of bundle ``a`` at position ``k`` is then exactly
``(1 − ε) · [greedy_k = a] + ε / M``, so every shown bundle's logged propensity is known in closed
form (no Monte Carlo), and is at least ``ε / M``: the off-policy estimators' weights are bounded by
``M / ε``. ``ε`` bounds the reward given up to exploration as well.

Candidates are addressed by their index in the impression's candidate list (``0 .. M-1``); arrays
are ``[n, K]`` for ``n`` impressions.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class EpsilonMixture:
    """The ε-mixture over lists of ``slate_size`` out of ``pool_size`` candidates."""

    epsilon: float
    pool_size: int
    slate_size: int

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if not 1 <= self.slate_size <= self.pool_size:
            raise ValueError(f"need 1 <= slate_size <= pool_size, got {self.slate_size}, {self.pool_size}")

    def sample(self, greedy: IntArray, rng: np.random.Generator) -> IntArray:
        """One list per row of ``greedy`` [n, K]: that list, or with probability ε a uniform one."""
        n = greedy.shape[0]
        random_lists = np.argsort(rng.random((n, self.pool_size)), axis=1)[:, : self.slate_size]
        explore = np.asarray(rng.random(n) < self.epsilon)
        return np.asarray(np.where(explore[:, None], random_lists, greedy), dtype=np.int64)

    def propensities(self, greedy: IntArray, shown: IntArray) -> FloatArray:
        """Marginal probability [n, K] of each shown candidate at its position."""
        return np.asarray((1.0 - self.epsilon) * (shown == greedy) + self.epsilon / self.pool_size, dtype=np.float64)

    def marginals(self, greedy: IntArray) -> FloatArray:
        """Marginal probability [n, K, M] of every candidate at every position."""
        n = greedy.shape[0]
        q = np.full((n, self.slate_size, self.pool_size), self.epsilon / self.pool_size)
        rows = np.arange(n)[:, None]
        positions = np.arange(self.slate_size)[None, :]
        q[rows, positions, greedy] += 1.0 - self.epsilon
        return q

    @cached_property
    def _second_moment_pinv(self) -> FloatArray:
        """``Γ^†`` in coordinates where the greedy list is candidates 0..K-1 in order.

        ``Γ[(k, a), (k', a')] = E[1{a at k} 1{a' at k'}]``; under the relabelling it is the same matrix
        for every impression, so its pseudo-inverse is computed once.
        """
        k, m = self.slate_size, self.pool_size
        pos = np.repeat(np.arange(k), m)
        cand = np.tile(np.arange(m), k)
        same_pos = pos[:, None] == pos[None, :]
        same_cand = cand[:, None] == cand[None, :]
        uniform = np.where(same_pos & same_cand, 1.0 / m, 0.0)
        if m > 1:
            uniform += np.where(~same_pos & ~same_cand, 1.0 / (m * (m - 1)), 0.0)
        greedy = ((pos == cand) & (cand < k)).astype(np.float64)
        gamma = (1.0 - self.epsilon) * np.outer(greedy, greedy) + self.epsilon * uniform
        return np.asarray(np.linalg.pinv(gamma, rcond=1e-10, hermitian=True))

    def pi_weights(self, greedy: IntArray, shown: IntArray, target_marginals: FloatArray) -> FloatArray:
        """The pseudo-inverse factor ``q^T Γ^† 1_s`` [n] of each impression, exact for this logger.

        ``target_marginals`` [n, K, M] is the target policy's probability of each candidate at each
        position (e.g. :meth:`marginals` of another mixture).
        """
        n = greedy.shape[0]
        k, m = self.slate_size, self.pool_size
        # relabel[i, a]: candidate a's label when impression i's greedy list is 0..K-1.
        relabel = np.empty((n, m), dtype=np.int64)
        others = np.ones((n, m), dtype=bool)
        rows = np.arange(n)[:, None]
        others[rows, greedy] = False
        relabel[rows, greedy] = np.arange(k)[None, :]
        rest = np.nonzero(others)
        relabel[rest] = (np.cumsum(others, axis=1) - 1 + k)[rest]
        shown_index = np.arange(k)[None, :] * m + relabel[rows, shown]  # [n, K] in Γ coordinates
        projected = self._second_moment_pinv[:, shown_index].sum(axis=2).T  # [n, K*M]
        q = np.empty((n, k, m))
        q[rows[:, :, None], np.arange(k)[None, :, None], relabel[:, None, :]] = target_marginals
        return np.asarray((q.reshape(n, k * m) * projected).sum(axis=1))
