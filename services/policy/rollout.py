"""Two speeds of change, kept apart: guard-railed refreshes of the approved policy, and promotions of a new
one, which need an off-policy evaluation; plus rollback.

- **Refresh** (:class:`RefreshGuard`, applied by the updater to every publish): the learned click
  rates move towards what the events say by at most ``max_rate_change`` per published version and
  arm; a contextual bandit's served weights and biases move at most ``max_bandit_step`` of the way
  from the approved ones to the learned ones; the serving settings (temperature, weight, exploration)
  stay those of the approved policy. The raw counts and the bandit's learning state are published
  unbounded, so a restart or the next refresh catches up step by step.
- **Promotion** (:func:`promote`): publishes a candidate's parameters only with an OPE result that
  passes :class:`PromotionRule` (enough impressions, and the 95% interval of the candidate's
  difference to the logging policy not below ``-max_regression``); the result goes into the
  version's note, the audit trail.
- **Rollback** (:func:`rollback`): republishes an earlier version's parameters under a new, higher
  version (consumers only ever move up), its contextual bandit as it was, keeping the latest version's
  log positions (and the bandit's ``closed_through``) so that the updater does not learn again from
  the events the rollback undid.

The updater adopts a version it did not publish itself (a promotion or rollback) at its next publish.

Command line::

    python -m services.policy.rollout history --catalog amazon
    python -m services.policy.rollout rollback --catalog amazon --to-version 12
    python -m services.policy.rollout promote --catalog amazon --params candidate.json \\
        --ope-report report.json --estimator dr
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc

from services.policy.bandit import BanditParams
from services.policy.domain import PolicyParams, Snapshot
from services.policy.ports import SnapshotStore
from services.policy.postgres_snapshots import PostgresSnapshotStore, params_from_json
from shared.errors import BundlewiseError, NotFound
from shared.settings import PostgresSettings, load_settings
from shared.store.migrate import make_engine


class PromotionRefused(BundlewiseError):
    """The evidence does not support promoting the candidate; nothing was published."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409


@dataclass(frozen=True)
class RefreshGuard:
    """Bounds one refresh: every arm's expected click rate moves by at most ``max_rate_change``; a
    contextual bandit's served weights and biases move at most ``max_bandit_step`` of the way from the
    approved ones towards the learned ones."""

    max_rate_change: float
    max_bandit_step: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.max_rate_change <= 1:
            raise ValueError(f"max_rate_change must be in (0, 1], got {self.max_rate_change}")
        if not 0 < self.max_bandit_step <= 1:
            raise ValueError(f"max_bandit_step must be in (0, 1], got {self.max_bandit_step}")

    def apply(self, approved: PolicyParams | None, learned: PolicyParams) -> PolicyParams:
        """``learned`` with each arm's posterior mean clipped to within ``max_rate_change`` of the same
        arm in ``approved`` (of the prior mean for a new arm), keeping the posterior's strength
        (alpha + beta), the raw counts and the learned reward; serving settings from ``approved``. With no approved
        policy yet, ``learned`` unchanged.

        A bandit in ``learned`` serves ``approved + max_bandit_step × (learned − approved)`` for the
        weights and for each bundle's bias (0 where ``approved`` has none: a new bundle, or no bandit
        yet), so every candidate's attractiveness moves at most that share of the way; its learning
        state is kept whole. When the kind changes (a bandit where ``approved`` had none, or none where
        it had one: the updater restarted with another ``BUNDLEWISE_POLICY_KIND``), the serving settings
        are ``learned``'s, since the approved ones were chosen for the other kind."""
        if approved is None:
            return learned
        same_kind = (approved.bandit is None) == (learned.bandit is None)
        serving = approved if same_kind else learned
        before = {arm.bundle_id: arm.expected_click_rate for arm in approved.arms}
        prior_mean = learned.prior_alpha / (learned.prior_alpha + learned.prior_beta)
        arms = []
        for arm in learned.arms:
            reference = before.get(arm.bundle_id, prior_mean)
            low, high = reference - self.max_rate_change, reference + self.max_rate_change
            mean = min(max(arm.expected_click_rate, low), high)
            strength = arm.alpha + arm.beta
            arms.append(replace(arm, alpha=mean * strength, beta=(1 - mean) * strength))
        return replace(
            learned,
            arms=tuple(arms),
            temperature=serving.temperature,
            ctr_weight=serving.ctr_weight,
            exploration=serving.exploration,
            epsilon=serving.epsilon,
            bandit=None if learned.bandit is None else self._bounded_bandit(approved.bandit, learned.bandit),
        )

    def _bounded_bandit(self, approved: BanditParams | None, learned: BanditParams) -> BanditParams:
        # Bounded in what is served, not in the learning state: blending the sums
        # (HybridLinUCB.bounded_step_towards) would keep the learner's full state out of the snapshot, so
        # a restart would lose what the blend held back, and it would not bound the served weights (a
        # share of a large state's sums solves to nearly its weights).
        step = self.max_bandit_step
        if approved is None or approved.feature_names != learned.feature_names:
            weights_before: tuple[float, ...] = (0.0,) * len(learned.weights)
            biases_before: dict[str, float] = {}
        else:
            weights_before, biases_before = approved.weights, dict(approved.biases)
        bundles = sorted(learned.biases.keys() | biases_before.keys())
        return replace(
            learned,
            weights=tuple(old + step * (new - old) for old, new in zip(weights_before, learned.weights, strict=True)),
            biases={
                bundle: biases_before.get(bundle, 0.0)
                + step * (learned.biases.get(bundle, 0.0) - biases_before.get(bundle, 0.0))
                for bundle in bundles
            },
        )


@dataclass(frozen=True)
class OpeEvidence:
    """What an off-policy evaluation said of a candidate (see ``python -m services.policy.ope``)."""

    estimator: str
    impressions: int
    value: float
    difference: float
    difference_low: float
    difference_high: float

    @classmethod
    def from_report(cls, report: dict[str, Any], estimator: str) -> OpeEvidence:
        """Reads ``estimator``'s figures from an OPE report.

        Raises:
            PromotionRefused: the report has no such estimate or difference.
        """
        try:
            estimate = report["estimates"][estimator]
            difference = report["difference_vs_logging"][estimator]
        except KeyError:
            raise PromotionRefused(f"the OPE report has no {estimator!r} estimate and difference") from None
        return cls(
            estimator=estimator,
            impressions=int(report["impressions_evaluated"]),
            value=float(estimate["value"]),
            difference=float(difference["value"]),
            difference_low=float(difference["low"]),
            difference_high=float(difference["high"]),
        )

    def describe(self) -> str:
        return (
            f"OPE {self.estimator} over {self.impressions} impressions: {self.value:.5f} per impression, "
            f"{self.difference:+.5f} vs logging (95% [{self.difference_low:+.5f}, {self.difference_high:+.5f}])"
        )


@dataclass(frozen=True)
class PromotionRule:
    """A candidate is promoted only with at least ``min_impressions`` evaluated and the lower end of its
    difference's 95% interval at least ``-max_regression`` (reward per impression)."""

    min_impressions: int = 10_000
    max_regression: float = 0.0

    def refusal(self, evidence: OpeEvidence) -> str | None:
        """Why ``evidence`` is not enough, or None if it is."""
        if evidence.impressions < self.min_impressions:
            return f"only {evidence.impressions} impressions evaluated; the rule needs {self.min_impressions}"
        if evidence.difference_low < -self.max_regression:
            return (
                f"the candidate may be worse than the logging policy: the 95% interval of its difference "
                f"reaches {evidence.difference_low:+.5f}, below -{self.max_regression}"
            )
        return None


def promote(
    store: SnapshotStore, catalog_id: str, candidate: PolicyParams, evidence: OpeEvidence, rule: PromotionRule
) -> int:
    """Publishes ``candidate`` as the next version of ``catalog_id`` and returns it.

    Raises:
        PromotionRefused: ``evidence`` does not pass ``rule`` (nothing is published).
        Unavailable: the store cannot be reached.
    """
    refusal = rule.refusal(evidence)
    if refusal is not None:
        raise PromotionRefused(f"promotion refused: {refusal}")
    latest = store.latest(catalog_id)
    params = candidate if latest is None else _with_learning_positions(candidate, latest.params)
    return store.publish(catalog_id, params, note=f"promoted: {evidence.describe()}")


def rollback(store: SnapshotStore, catalog_id: str, to_version: int) -> int:
    """Republishes version ``to_version`` of ``catalog_id`` as a new version and returns that version.

    Raises:
        NotFound: the catalog has no such version.
        Unavailable: the store cannot be reached.
    """
    target = store.get(catalog_id, to_version)
    latest = store.latest(catalog_id)
    if target is None or latest is None:
        raise NotFound(f"catalog {catalog_id} has no policy version {to_version}")
    params = _with_learning_positions(target.params, latest.params)
    return store.publish(catalog_id, params, note=f"rollback to version {to_version} (from {latest.version})")


def _with_learning_positions(params: PolicyParams, latest: PolicyParams) -> PolicyParams:
    """``params`` with the latest version's log positions and, where both carry a bandit, its
    ``closed_through``: how far the log was learned from stays where it was, whatever is served."""
    bandit = params.bandit
    if bandit is not None and latest.bandit is not None:
        bandit = replace(bandit, closed_through=latest.bandit.closed_through)
    return replace(params, log_positions=latest.log_positions, bandit=bandit)


def _describe(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "version": snapshot.version,
        "policy": snapshot.policy_name,
        "kind": snapshot.params.kind,
        "arms": len(snapshot.params.arms),
        "temperature": snapshot.params.temperature,
        "ctr_weight": snapshot.params.ctr_weight,
        "note": snapshot.note,
        "created_at": snapshot.created_at.isoformat(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.policy.rollout", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    history = commands.add_parser("history", help="list a catalog's versions, newest first")
    history.add_argument("--catalog", required=True)
    history.add_argument("--limit", type=int, default=20)
    back = commands.add_parser("rollback", help="republish an earlier version as a new one")
    back.add_argument("--catalog", required=True)
    back.add_argument("--to-version", type=int, required=True)
    up = commands.add_parser("promote", help="publish a candidate that passed off-policy evaluation")
    up.add_argument("--catalog", required=True)
    up.add_argument("--params", type=Path, required=True, help="candidate parameters (policy_versions JSON)")
    up.add_argument("--ope-report", type=Path, required=True, help="output of python -m services.policy.ope")
    up.add_argument("--estimator", default="dr")
    up.add_argument("--min-impressions", type=int, default=PromotionRule().min_impressions)
    up.add_argument("--max-regression", type=float, default=PromotionRule().max_regression)
    args = parser.parse_args(argv)
    settings = load_settings(PostgresSettings)
    engine = make_engine(settings.postgres_url, settings.namespace)
    store = PostgresSnapshotStore(engine)
    try:
        if args.command == "history":
            print(json.dumps([_describe(s) for s in store.history(args.catalog, args.limit)], indent=2))
        elif args.command == "rollback":
            print(json.dumps({"catalog": args.catalog, "version": rollback(store, args.catalog, args.to_version)}))
        else:
            evidence = OpeEvidence.from_report(json.loads(args.ope_report.read_text()), args.estimator)
            candidate = params_from_json(json.loads(args.params.read_text()))
            rule = PromotionRule(args.min_impressions, args.max_regression)
            version = promote(store, args.catalog, candidate, evidence, rule)
            print(json.dumps({"catalog": args.catalog, "version": version, "evidence": evidence.describe()}))
    except (PromotionRefused, NotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
