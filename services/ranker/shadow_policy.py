"""A candidate policy run in shadow: it scores the served candidates of its catalog and its
probabilities for the served list are returned beside the answer, which it never changes.

The candidate comes from a file in the ``policy_versions`` JSON shape (:mod:`shared.policy_params`), the
file that ``python -m services.policy.rollout promote --params`` takes, so the candidate evaluated in
shadow is the one later promoted. It is named ``name:version``, the ``shadow_policy`` the impressions
log and ``python -m services.policy.ope --shadow-policy`` selects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from services.ranker.domain import LinearBandit, PolicyParams
from shared.bandit_features import FEATURES
from shared.policy_params import ServingParamsDocument
from shared.settings import SettingsError


@dataclass(frozen=True)
class ShadowPolicy:
    """A candidate policy of one catalog, logged as ``label`` (``name:version``)."""

    catalog_id: str
    label: str
    params: PolicyParams


def load_shadow_policy(path: Path, catalog_id: str, label: str) -> ShadowPolicy:
    """The candidate of ``catalog_id`` in ``path``.

    Raises:
        shared.settings.SettingsError: the file cannot be read or is not candidate params; the
            message says which and what to fix.
    """
    try:
        document = ServingParamsDocument.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise SettingsError(f"BUNDLEWISE_SHADOW_POLICY_FILE {path} cannot be read: {exc.strerror}") from None
    except (json.JSONDecodeError, ValidationError) as exc:
        raise SettingsError(
            f"BUNDLEWISE_SHADOW_POLICY_FILE {path} is not candidate policy params (the policy_versions JSON "
            f"that `python -m services.policy.rollout promote --params` takes): {exc}"
        ) from None
    if not document.temperature >= 0:  # NaN too
        raise SettingsError(
            f"BUNDLEWISE_SHADOW_POLICY_FILE {path}: temperature must be at least 0 (0 is greedy), "
            f"got {document.temperature}"
        )
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
        bandit=_bandit(path, document),
    )
    return ShadowPolicy(catalog_id, label, params)


def _bandit(path: Path, document: ServingParamsDocument) -> LinearBandit | None:
    """A contextual bandit candidate's served part; None for a candidate of click rates.

    Raises:
        shared.settings.SettingsError: its features are not the ones this ranker computes, or it
            explores otherwise than by the epsilon-mixture.
    """
    if document.bandit is None:
        return None
    if tuple(document.bandit.feature_names) != FEATURES:
        raise SettingsError(
            f"BUNDLEWISE_SHADOW_POLICY_FILE {path}: a contextual bandit over features "
            f"{document.bandit.feature_names}, but this ranker computes {list(FEATURES)}"
        )
    if document.exploration != "epsilon_mixture":
        raise SettingsError(
            f"BUNDLEWISE_SHADOW_POLICY_FILE {path}: a contextual bandit explores by epsilon_mixture; "
            f"the file says {document.exploration!r}"
        )
    return LinearBandit(tuple(document.bandit.feature_weights), dict(document.bandit.bundle_bias))
