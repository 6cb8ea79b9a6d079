"""PostgreSQL adapter of :class:`~services.policy.ports.SnapshotStore` over ``policy_versions``.

``params`` is the policy params document of :mod:`shared.policy_params` (``arms`` is what a reader of
the policy needs; ``counts`` and ``log_positions`` let the updater resume exactly where the snapshot
left off; a contextual bandit's ``bandit`` section holds both its served weights and its state).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import OperationalError

from services.policy.bandit import BanditLearning, BanditParams, BundleSums
from services.policy.domain import Arm, PolicyParams, Snapshot, policy_name
from shared.errors import Unavailable
from shared.policy_params import (
    BanditDocument,
    PolicyParamsDocument,
    counts_to_json,
    positions_from_json,
    positions_to_json,
    reward_from_json,
)
from shared.store import tables

_T = tables.policy_versions


def params_to_json(params: PolicyParams) -> dict[str, Any]:
    """The JSON stored in ``policy_versions.params`` (see :mod:`shared.policy_params`)."""
    document: dict[str, Any] = {
        "temperature": params.temperature,
        "ctr_weight": params.ctr_weight,
        "prior_alpha": params.prior_alpha,
        "prior_beta": params.prior_beta,
        "arms": {arm.bundle_id: [arm.alpha, arm.beta] for arm in params.arms},
        "counts": {arm.bundle_id: counts_to_json(arm.impressions, arm.clicks, arm.reward) for arm in params.arms},
        "log_positions": positions_to_json(params.log_positions),
        "exploration": params.exploration,
        "epsilon": params.epsilon,
    }
    if params.window_positions:
        document["window_positions"] = positions_to_json(params.window_positions)
    if params.bandit is not None:
        document["bandit"] = bandit_to_json(params.bandit)
    return document


def bandit_to_json(bandit: BanditParams) -> dict[str, Any]:
    """The document's ``bandit`` section (see :mod:`shared.policy_params`)."""
    learning = bandit.learning
    return {
        "feature_names": list(bandit.feature_names),
        "feature_weights": list(bandit.weights),
        "bundle_bias": dict(bandit.biases),
        "closed_through": None if bandit.closed_through is None else bandit.closed_through.isoformat(),
        "state": {
            "shared_gram": [list(row) for row in learning.shared_gram],
            "shared_target": list(learning.shared_target),
            "bundles": {
                bundle_id: [sums.count, sums.target, *sums.features] for bundle_id, sums in learning.bundles.items()
            },
            "explored_clicks": list(learning.explored_clicks),
            "explored_shown": list(learning.explored_shown),
        },
    }


def bandit_from_json(section: BanditDocument) -> BanditParams:
    """Reads a validated ``bandit`` section (bundles in bundle id order)."""
    state = section.state
    return BanditParams(
        feature_names=tuple(section.feature_names),
        weights=tuple(section.feature_weights),
        biases={bundle_id: section.bundle_bias[bundle_id] for bundle_id in sorted(section.bundle_bias)},
        learning=BanditLearning(
            shared_gram=tuple(tuple(row) for row in state.shared_gram),
            shared_target=tuple(state.shared_target),
            bundles={
                bundle_id: BundleSums(sums[0], sums[1], tuple(sums[2:]))
                for bundle_id, sums in sorted(state.bundles.items())
            },
            explored_clicks=tuple(state.explored_clicks),
            explored_shown=tuple(state.explored_shown),
        ),
        closed_through=section.closed_through,
    )


def params_from_json(document: Any) -> PolicyParams:
    """Reads what :func:`params_to_json` wrote.

    Raises:
        pydantic.ValidationError: the document does not have that shape, or its ``arms`` and
            ``counts`` name different bundles.
    """
    parsed = PolicyParamsDocument.model_validate(document)
    arms = tuple(
        Arm(
            bundle_id=bundle_id,
            impressions=parsed.counts[bundle_id][0],
            clicks=parsed.counts[bundle_id][1],
            alpha=alpha,
            beta=beta,
            reward=reward_from_json(parsed.counts[bundle_id]),
        )
        for bundle_id, (alpha, beta) in sorted(parsed.arms.items())
    )
    return PolicyParams(
        temperature=parsed.temperature,
        ctr_weight=parsed.ctr_weight,
        prior_alpha=parsed.prior_alpha,
        prior_beta=parsed.prior_beta,
        arms=arms,
        log_positions=positions_from_json(parsed.log_positions),
        exploration=parsed.exploration,
        epsilon=parsed.epsilon,
        window_positions=positions_from_json(parsed.window_positions),
        bandit=None if parsed.bandit is None else bandit_from_json(parsed.bandit),
    )


@contextmanager
def _store_unavailable_on_connection_errors() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        raise Unavailable(f"policy store (PostgreSQL) unavailable: {exc.orig or exc}") from exc


class PostgresSnapshotStore:
    """Snapshots in ``policy_versions`` of the engine's namespace (see ``shared.store.migrate``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def latest(self, catalog_id: str) -> Snapshot | None:
        found = self._read(catalog_id, None, 1)
        return found[0] if found else None

    def get(self, catalog_id: str, version: int) -> Snapshot | None:
        found = self._read(catalog_id, version, 1)
        return found[0] if found else None

    def history(self, catalog_id: str, limit: int) -> list[Snapshot]:
        return self._read(catalog_id, None, limit)

    def _read(self, catalog_id: str, version: int | None, limit: int) -> list[Snapshot]:
        query = (
            select(_T.c.version, _T.c.policy_name, _T.c.params, _T.c.note, _T.c.created_at)
            .where(_T.c.catalog_id == catalog_id)
            .order_by(_T.c.version.desc())
            .limit(limit)
        )
        if version is not None:
            query = query.where(_T.c.version == version)
        with _store_unavailable_on_connection_errors(), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            Snapshot(
                catalog_id=catalog_id,
                version=row.version,
                policy_name=row.policy_name,
                params=params_from_json(row.params),
                note=row.note,
                created_at=row.created_at,
            )
            for row in rows
        ]

    def publish(self, catalog_id: str, params: PolicyParams, note: str) -> int:
        next_version = (
            select(func.coalesce(func.max(_T.c.version), 0) + 1).where(_T.c.catalog_id == catalog_id).scalar_subquery()
        )
        statement = (
            insert(_T)
            .values(
                catalog_id=catalog_id,
                version=next_version,
                policy_name=policy_name(params),
                params=params_to_json(params),
                note=note,
            )
            .returning(_T.c.version)
        )
        with _store_unavailable_on_connection_errors(), self._engine.begin() as conn:
            # Serialises publishers of one catalog in this schema until commit, so each reads the max
            # version its predecessor wrote (an empty catalog has no row that FOR UPDATE could lock).
            conn.execute(
                text(
                    "SELECT pg_advisory_xact_lock(hashtextextended("
                    "'bundlewise-policy-versions:' || current_schema() || ':' || :catalog_id, 0))"
                ),
                {"catalog_id": catalog_id},
            )
            return int(conn.execute(statement).scalar_one())

    def catalogs(self) -> list[str]:
        query = select(_T.c.catalog_id).distinct().order_by(_T.c.catalog_id)
        with _store_unavailable_on_connection_errors(), self._engine.connect() as conn:
            return list(conn.execute(query).scalars())
