"""Off-policy estimators for ranked lists of bundles: what a candidate policy would have earned, from
impressions a logging policy chose, with 95% confidence intervals.

Pure numpy, vectorised over impressions. The input, :class:`LoggedSlates`, holds for ``n`` impressions
of up to ``K`` positions:

- ``rewards[i, k]``: the reward credited to position ``k`` of impression ``i`` (clicks, purchases,
  revenue, weighted by :class:`~services.policy.join.RewardWeights`); 0 where no bundle was shown;
- ``logging_propensities[i, k]``: the *marginal* probability with which the logging policy put the
  shown bundle at position ``k`` (not conditional on the bundles above it);
- ``target_propensities[i, k]``: the same probability under the candidate policy.

Estimators (every one estimates the expected total reward of one impression under the target):

- ``ips`` (position-based IPS, also called independent IPS): ``Σ_k r_k · q_k / p_k``. Unbiased when the
  reward of a position depends only on the bundle shown there (the position-based click model), for
  any logging policy whose marginals cover the target's.
- ``snips``: per position, ``Σ_i r_ik w_ik / Σ_i w_ik``; consistent, less variance, slightly biased.
- ``pi``: the pseudo-inverse estimator (Swaminathan et al., 2017, "Off-policy evaluation for slate
  recommendation"): only the total reward of the list is used, ``r · q^T Γ^† 1_s``, with ``Γ`` the
  logging policy's second moment of slot-bundle indicators. Unbiased when the list's reward is the sum
  of per-position terms. The per-impression factor ``q^T Γ^† 1_s`` depends on the logging policy and
  is computed by the caller: :func:`factorised_pi_weights` for a logger whose positions are drawn
  independently, :meth:`services.policy.exploration.EpsilonMixture.pi_weights` exactly for the
  project's exploring policy.
- ``snpi``: the pseudo-inverse estimator self-normalised by the mean of its weights (whose
  expectation is 1).
- ``dr`` (doubly robust, per position): ``DM + Σ_k w_k (r_k − r̂_k)``, where ``r̂_k`` is a reward model's
  prediction for the shown bundle at position ``k`` and ``DM`` the model's expected reward of the
  target's list. Unbiased when either the propensities or the model are right; lower variance than
  ``ips`` when the model is good.
- ``logging``: the mean observed reward, i.e. the on-policy value of the logging policy.

Intervals are normal (CLT) intervals ``estimate ± 1.96 · s/√n`` over the per-impression terms; the
self-normalised estimators use the delta method for a ratio of means. Impressions are assumed
independent given the logging policy; a bootstrap is available (:func:`bootstrap_interval`) when that
normal approximation is in doubt (few impressions, very large weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Z_95 = 1.959963984540054
ESTIMATORS = ("logging", "ips", "snips", "pi", "snpi", "dr")


@dataclass(frozen=True)
class LoggedSlates:
    """``n`` logged impressions of up to ``K`` positions (see the module docstring).

    Arrays are float64 ``[n, K]`` except ``pi_weights`` and ``target_model_value`` (``[n]``).
    ``shown[i, k]`` is False where impression ``i`` had fewer than ``k + 1`` bundles; there, rewards
    must be 0 and propensities are ignored. ``predicted`` (``r̂`` of each shown pair) and
    ``target_model_value`` (the model's expected reward of the target's list) enable ``dr``;
    ``pi_weights`` (``q^T Γ^† 1_s`` per impression) enables ``pi`` and ``snpi``.
    """

    rewards: FloatArray
    logging_propensities: FloatArray
    target_propensities: FloatArray
    shown: npt.NDArray[np.bool_]
    pi_weights: FloatArray | None = None
    predicted: FloatArray | None = None
    target_model_value: FloatArray | None = None

    def __post_init__(self) -> None:
        shape = self.rewards.shape
        if len(shape) != 2:
            raise ValueError(f"rewards must be [n, K], got shape {shape}")
        for name in ("logging_propensities", "target_propensities", "shown", "predicted"):
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f"{name} has shape {value.shape}, expected {shape}")
        for name in ("pi_weights", "target_model_value"):
            value = getattr(self, name)
            if value is not None and value.shape != (shape[0],):
                raise ValueError(f"{name} has shape {value.shape}, expected ({shape[0]},)")
        if np.any(self.shown & ~(self.logging_propensities > 0)):
            raise ValueError("every shown bundle needs a logging propensity above 0")

    @property
    def n(self) -> int:
        return int(self.rewards.shape[0])

    def weights(self) -> FloatArray:
        """Per-position importance weights ``q / p`` (0 where nothing was shown)."""
        safe = np.where(self.shown, self.logging_propensities, 1.0)
        return np.where(self.shown, self.target_propensities / safe, 0.0)


@dataclass(frozen=True)
class Estimate:
    """An estimated expected reward per impression, with its 95% interval ``[low, high]``."""

    estimator: str
    value: float
    low: float
    high: float
    std_error: float
    n: int
    interval: str = "clt"

    def covers(self, truth: float) -> bool:
        return self.low <= truth <= self.high

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "estimator": self.estimator,
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "std_error": self.std_error,
            "n": self.n,
            "interval": self.interval,
        }


def mean_estimate(name: str, terms: FloatArray) -> Estimate:
    n = terms.shape[0]
    if n == 0:
        raise ValueError("no impressions to estimate from")
    value = float(terms.mean())
    se = float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    return Estimate(name, value, value - Z_95 * se, value + Z_95 * se, se, n)


def _ratio_estimate(name: str, numerators: FloatArray, denominators: FloatArray) -> Estimate:
    """Σ_k mean(a_k) / mean(w_k) over columns, with a delta-method interval; [n, C] inputs."""
    n = numerators.shape[0]
    if n == 0:
        raise ValueError("no impressions to estimate from")
    mean_w = denominators.mean(axis=0)
    safe = np.where(mean_w > 0, mean_w, 1.0)
    ratios = np.where(mean_w > 0, numerators.mean(axis=0) / safe, 0.0)
    influence = ((numerators - ratios * denominators) / safe).sum(axis=1)
    value = float(ratios.sum())
    se = float(influence.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    return Estimate(name, value, value - Z_95 * se, value + Z_95 * se, se, n)


def logging_value(data: LoggedSlates) -> Estimate:
    """The logging policy's own mean reward per impression."""
    return mean_estimate("logging", data.rewards.sum(axis=1))


def position_ips(data: LoggedSlates) -> Estimate:
    return mean_estimate("ips", (data.rewards * data.weights()).sum(axis=1))


def self_normalised_position_ips(data: LoggedSlates) -> Estimate:
    weights = data.weights()
    return _ratio_estimate("snips", data.rewards * weights, weights)


def pseudo_inverse(data: LoggedSlates) -> Estimate:
    """Raises ValueError when ``data.pi_weights`` is missing."""
    if data.pi_weights is None:
        raise ValueError("the pseudo-inverse estimator needs pi_weights")
    return mean_estimate("pi", data.rewards.sum(axis=1) * data.pi_weights)


def self_normalised_pseudo_inverse(data: LoggedSlates) -> Estimate:
    if data.pi_weights is None:
        raise ValueError("the pseudo-inverse estimator needs pi_weights")
    totals = data.rewards.sum(axis=1)
    return _ratio_estimate("snpi", (totals * data.pi_weights)[:, None], data.pi_weights[:, None])


def doubly_robust(data: LoggedSlates) -> Estimate:
    """Raises ValueError when ``predicted`` or ``target_model_value`` is missing."""
    if data.predicted is None or data.target_model_value is None:
        raise ValueError("the doubly robust estimator needs predicted and target_model_value")
    residuals = np.where(data.shown, data.rewards - data.predicted, 0.0)
    return mean_estimate("dr", data.target_model_value + (data.weights() * residuals).sum(axis=1))


def factorised_pi_weights(data: LoggedSlates) -> FloatArray:
    """``Σ_k q_k/p_k − (K_i − 1)``: the pseudo-inverse factor when the logging policy draws each position
    independently (Swaminathan et al., 2017, Section 4); an approximation for other loggers."""
    return np.asarray(data.weights().sum(axis=1) - (data.shown.sum(axis=1) - 1), dtype=np.float64)


def estimate_all(data: LoggedSlates, names: tuple[str, ...] = ESTIMATORS) -> dict[str, Estimate]:
    """Every estimator of ``names`` that ``data`` has the inputs for, by name."""
    available = {
        "logging": logging_value,
        "ips": position_ips,
        "snips": self_normalised_position_ips,
    }
    if data.pi_weights is not None:
        available |= {"pi": pseudo_inverse, "snpi": self_normalised_pseudo_inverse}
    if data.predicted is not None and data.target_model_value is not None:
        available["dr"] = doubly_robust
    return {name: available[name](data) for name in names if name in available}


def bootstrap_interval(
    estimate: Estimate, terms: FloatArray, rng: np.random.Generator, resamples: int = 1000
) -> Estimate:
    """The percentile bootstrap interval of the mean of per-impression ``terms`` (for a mean estimator)."""
    n = terms.shape[0]
    draws = rng.integers(0, n, size=(resamples, n))
    means = terms[draws].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return Estimate(estimate.estimator, estimate.value, float(low), float(high), float(means.std()), n, "bootstrap")
