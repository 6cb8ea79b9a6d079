"""A candidate policy run in shadow: it scores the served candidates of its catalog and its
probabilities for the served list are returned beside the answer, which it never changes.

The candidate comes from a file in the ``policy_versions`` JSON shape, the file that
``python -m services.policy.rollout promote --params`` takes (``services/policy/postgres_snapshots.py``),
so the candidate evaluated in shadow is the one later promoted. It is named ``name:version``, the
``shadow_policy`` the impressions log and ``python -m services.policy.ope --shadow-policy`` selects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.ranker.domain import PolicyParams
from shared.settings import SettingsError


@dataclass(frozen=True)
class ShadowPolicy:
    """A candidate policy of one catalog, logged as ``label`` (``name:version``)."""

    catalog_id: str
    label: str
    params: PolicyParams


class _CandidateDocument(BaseModel):
    """The fields serving reads; the learning state beside them is accepted and not used."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(ge=0)
    ctr_weight: float
    arms: dict[str, tuple[float, float]]
    exploration: Literal["softmax", "epsilon_mixture"] = "softmax"
    epsilon: float = Field(default=0.0, ge=0, le=1)
    prior_alpha: float | None = None
    prior_beta: float | None = None
    counts: dict[str, Any] | None = None
    log_positions: dict[str, Any] | None = None
    window_positions: dict[str, Any] | None = None


def load_shadow_policy(path: Path, catalog_id: str, label: str) -> ShadowPolicy:
    """The candidate of ``catalog_id`` in ``path``.

    Raises:
        shared.settings.SettingsError: the file cannot be read or is not candidate params; the
            message says which and what to fix.
    """
    try:
        document = _CandidateDocument.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise SettingsError(f"BUNDLEWISE_SHADOW_POLICY_FILE {path} cannot be read: {exc.strerror}") from None
    except (json.JSONDecodeError, ValidationError) as exc:
        raise SettingsError(
            f"BUNDLEWISE_SHADOW_POLICY_FILE {path} is not candidate policy params (the policy_versions JSON "
            f"that `python -m services.policy.rollout promote --params` takes): {exc}"
        ) from None
    bad_arms = sorted(b for b, (alpha, beta) in document.arms.items() if alpha <= 0 or beta <= 0)
    if bad_arms:
        raise SettingsError(
            f"BUNDLEWISE_SHADOW_POLICY_FILE {path}: arms need alpha > 0 and beta > 0; not so for {bad_arms[:5]}"
        )
    params = PolicyParams(
        version=0,  # the candidate's version is in its label; it is never published from here
        temperature=document.temperature,
        ctr_weight=document.ctr_weight,
        arms=document.arms,
        exploration=document.exploration,
        epsilon=document.epsilon,
    )
    return ShadowPolicy(catalog_id, label, params)
