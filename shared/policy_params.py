"""The policy params document: the JSON of a published policy version (``policy_versions.params``) and
of a candidate's params file (what ``python -m services.policy.rollout promote --params`` takes and the
ranker's shadow candidate is read from). The policy service writes and reads it; the ranker serves a
shadow candidate from it.

Its shape (``arms`` is what serving a policy needs; the prior, ``counts`` and ``log_positions`` are the
learning state, with which the updater resumes exactly where the snapshot left off)::

    {"temperature": 0.1, "ctr_weight": 1.0, "prior_alpha": 1.0, "prior_beta": 20.0,
     "arms": {"<bundle_id>": [alpha, beta]},
     "counts": {"<bundle_id>": [impressions, clicks] | [impressions, clicks, reward]},
     "log_positions": {"<topic>": {"<partition>": next_offset}},
     "exploration": "softmax" | "epsilon_mixture", "epsilon": 0.05,
     "window_positions": {"<topic>": {"<partition>": offset}},
     "bandit": {
       "feature_names": ["intercept", ...],
       "feature_weights": [w, ...],
       "bundle_bias": {"<bundle_id>": bias},
       "closed_through": "2026-11-01T12:00:00+00:00" | null,
       "state": {"shared_gram": [[g, ...], ...], "shared_target": [t, ...],
                 "bundles": {"<bundle_id>": [count, target, f, ...]},
                 "explored_clicks": [c, ...], "explored_shown": [s, ...]}}}

``exploration`` and ``epsilon`` are optional (documents written before they existed are softmax). A
bundle's ``reward`` is written only where it differs from its clicks (rewards from purchases or
revenue), and ``window_positions`` only where known, so documents of click-only learning keep their
older shape.

``bandit`` is present only for a contextual bandit (``services/policy/bandit.py``; absent for a policy
of click rates). Served: a candidate's attractiveness is ``feature_weights · features +
bundle_bias[bundle]`` over ``feature_names`` (``shared.bandit_features.FEATURES``), a bundle without a
bias counting 0. Learning: ``state`` holds the bandit's sums (with d features and K positions learned
from: ``shared_gram`` d × d, ``shared_target`` d, per bundle Σ e², Σ e·y and Σ e²·z (d values),
``explored_clicks`` and ``explored_shown`` K), from which the updater resumes; ``closed_through`` is the
join's watermark when the version was published: the state counts the impressions read below
``log_positions`` whose window ended by then.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

Exploration = Literal["softmax", "epsilon_mixture"]
# A bundle's counts: [impressions, clicks] or [impressions, clicks, reward].
ArmCounts = tuple[int, int] | tuple[int, int, float]
# Per topic, per partition (a string key in JSON), an offset of the event log.
PositionsJson = dict[str, dict[int, int]]
# A number of the bandit's section: JSON (and PostgreSQL's jsonb) has no NaN or infinity.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class ServedBanditDocument(BaseModel):
    """What serving reads of a ``bandit`` section: the features, their weights and the bundles' biases.
    The learning state beside them (``state``, ``closed_through``) is accepted and not checked."""

    model_config = ConfigDict(extra="allow")

    feature_names: list[str] = Field(min_length=1)
    feature_weights: list[FiniteFloat]
    bundle_bias: dict[str, FiniteFloat] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _a_weight_per_feature(self) -> Self:
        if len(self.feature_weights) != len(self.feature_names):
            raise ValueError(
                f"bandit: {len(self.feature_weights)} feature_weights for {len(self.feature_names)} feature_names"
            )
        return self


class ServingParamsDocument(BaseModel):
    """The document as a reader that only serves the policy reads it (the ranker's shadow candidate).

    The serving fields are checked, a ``bandit`` section's served part included. The learning state
    beside them may be absent and its inside is not checked: serving does not use it. A key the
    document does not have is refused.
    """

    model_config = ConfigDict(extra="forbid")

    temperature: float
    ctr_weight: float
    arms: dict[str, tuple[float, float]]
    exploration: Exploration = "softmax"
    epsilon: float = Field(default=0.0, ge=0, le=1)
    prior_alpha: float | None = None
    prior_beta: float | None = None
    counts: dict[str, Any] | None = None
    log_positions: dict[str, Any] | None = None
    window_positions: dict[str, Any] | None = None
    bandit: ServedBanditDocument | None = None


class BanditStateDocument(BaseModel):
    """The bandit's learning state (see the module docstring); shapes are checked by
    :class:`BanditDocument`, which knows the number of features."""

    model_config = ConfigDict(extra="forbid")

    shared_gram: list[list[FiniteFloat]]
    shared_target: list[FiniteFloat]
    bundles: dict[str, list[FiniteFloat]]
    explored_clicks: list[FiniteFloat] = Field(min_length=1)
    explored_shown: list[FiniteFloat] = Field(min_length=1)


class BanditDocument(BaseModel):
    """The ``bandit`` section of the document (see the module docstring).

    Validation raises ``pydantic.ValidationError`` when a shape disagrees with ``feature_names``.
    """

    model_config = ConfigDict(extra="forbid")

    feature_names: list[str] = Field(min_length=1)
    feature_weights: list[FiniteFloat]
    bundle_bias: dict[str, FiniteFloat]
    state: BanditStateDocument
    closed_through: AwareDatetime | None = None

    @model_validator(mode="after")
    def _shapes_agree_with_the_features(self) -> Self:
        d = len(self.feature_names)
        state = self.state
        problems = []
        if len(self.feature_weights) != d:
            problems.append(f"'feature_weights' has {len(self.feature_weights)} values")
        if len(state.shared_gram) != d or any(len(row) != d for row in state.shared_gram):
            problems.append("'state.shared_gram' is not d × d")
        if len(state.shared_target) != d:
            problems.append(f"'state.shared_target' has {len(state.shared_target)} values")
        wrong = sorted(bundle for bundle, sums in state.bundles.items() if len(sums) != 2 + d)
        if wrong:
            problems.append(f"'state.bundles' of {wrong[:5]} do not have 2 + d values")
        if len(state.explored_clicks) != len(state.explored_shown):
            problems.append("'state.explored_clicks' and 'state.explored_shown' differ in length")
        if problems:
            raise ValueError(f"policy params bandit over d = {d} features: {'; '.join(problems)}")
        return self


class PolicyParamsDocument(ServingParamsDocument):
    """The whole document, learning state included and checked: what the policy service publishes and
    reads back (snapshots, promoted candidates).

    Validation raises ``pydantic.ValidationError`` for a document of another shape, including one whose
    ``arms`` and ``counts`` name different bundles.
    """

    prior_alpha: float = Field(gt=0)
    prior_beta: float = Field(gt=0)
    counts: dict[str, ArmCounts]
    log_positions: PositionsJson = Field(default_factory=dict)
    window_positions: PositionsJson = Field(default_factory=dict)
    # The learning state checked too, as the fields above are.
    bandit: BanditDocument | None = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _arms_and_counts_name_the_same_bundles(self) -> Self:
        if self.arms.keys() != self.counts.keys():
            raise ValueError("policy params: 'arms' and 'counts' name different bundles")
        return self


def positions_to_json(positions: Mapping[tuple[str, int], int]) -> dict[str, dict[str, int]]:
    """``{(topic, partition): offset}`` as the document's ``{topic: {"partition": offset}}``, sorted."""
    by_topic: dict[str, dict[str, int]] = {}
    for (topic, partition), offset in sorted(positions.items()):
        by_topic.setdefault(topic, {})[str(partition)] = offset
    return by_topic


def positions_from_json(by_topic: Mapping[str, Mapping[int, int]]) -> dict[tuple[str, int], int]:
    """The inverse of :func:`positions_to_json`, from a validated document's positions."""
    return {(topic, partition): offset for topic, offsets in by_topic.items() for partition, offset in offsets.items()}


def counts_to_json(impressions: int, clicks: int, reward: float | None) -> list[float]:
    """A bundle's ``counts`` entry; ``reward`` is None where it equals ``clicks`` (and is left out)."""
    if reward is None:
        return [impressions, clicks]
    return [impressions, clicks, reward]


def reward_from_json(counts: ArmCounts) -> float | None:
    """The ``reward`` of a ``counts`` entry; None where it was left out (it equals the clicks)."""
    return counts[2] if len(counts) == 3 else None
