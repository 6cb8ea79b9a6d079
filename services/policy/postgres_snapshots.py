"""PostgreSQL adapter of :class:`~services.policy.ports.SnapshotStore` over ``policy_versions``.

``params`` is JSON of this shape (``arms`` is what a reader of the policy needs; ``counts`` and
``log_positions`` let the updater resume exactly where the snapshot left off)::

    {"temperature": 0.1, "ctr_weight": 1.0, "prior_alpha": 1.0, "prior_beta": 20.0,
     "arms": {"<bundle_id>": [alpha, beta]},
     "counts": {"<bundle_id>": [impressions, clicks] | [impressions, clicks, reward]},
     "log_positions": {"<topic>": {"<partition>": next_offset}},
     "exploration": "softmax" | "epsilon_mixture", "epsilon": 0.05,
     "window_positions": {"<topic>": {"<partition>": offset}}}

``exploration`` and ``epsilon`` are optional (snapshots written before they existed are softmax). A
bundle's ``reward`` is written only where it differs from its clicks (rewards from purchases or revenue),
and ``window_positions`` only where known, so snapshots of click-only learning keep their older shape.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import OperationalError

from services.policy.domain import POLICY_NAME, Arm, LogPartition, PolicyParams, Snapshot
from shared.errors import Unavailable
from shared.store import tables

_T = tables.policy_versions


class _ParamsDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float
    ctr_weight: float
    prior_alpha: float = Field(gt=0)
    prior_beta: float = Field(gt=0)
    arms: dict[str, tuple[float, float]]
    counts: dict[str, tuple[int, int] | tuple[int, int, float]]
    log_positions: dict[str, dict[int, int]] = Field(default_factory=dict)
    exploration: Literal["softmax", "epsilon_mixture"] = "softmax"
    epsilon: float = Field(default=0.0, ge=0, le=1)
    window_positions: dict[str, dict[int, int]] = Field(default_factory=dict)


def _positions_to_json(positions: Mapping[LogPartition, int]) -> dict[str, dict[str, int]]:
    by_topic: dict[str, dict[str, int]] = {}
    for (topic, partition), offset in sorted(positions.items()):
        by_topic.setdefault(topic, {})[str(partition)] = offset
    return by_topic


def _positions_from_json(by_topic: dict[str, dict[int, int]]) -> dict[LogPartition, int]:
    return {(topic, partition): offset for topic, offsets in by_topic.items() for partition, offset in offsets.items()}


def _counts_to_json(arm: Arm) -> list[float]:
    if arm.reward is None:
        return [arm.impressions, arm.clicks]
    return [arm.impressions, arm.clicks, arm.reward]


def _reward_from_json(counts: tuple[int, int] | tuple[int, int, float]) -> float | None:
    return counts[2] if len(counts) == 3 else None


def params_to_json(params: PolicyParams) -> dict[str, Any]:
    """The JSON stored in ``policy_versions.params`` (see the module docstring)."""
    document: dict[str, Any] = {
        "temperature": params.temperature,
        "ctr_weight": params.ctr_weight,
        "prior_alpha": params.prior_alpha,
        "prior_beta": params.prior_beta,
        "arms": {arm.bundle_id: [arm.alpha, arm.beta] for arm in params.arms},
        "counts": {arm.bundle_id: _counts_to_json(arm) for arm in params.arms},
        "log_positions": _positions_to_json(params.log_positions),
        "exploration": params.exploration,
        "epsilon": params.epsilon,
    }
    if params.window_positions:
        document["window_positions"] = _positions_to_json(params.window_positions)
    return document


def params_from_json(document: Any) -> PolicyParams:
    """Reads what :func:`params_to_json` wrote.

    Raises:
        pydantic.ValidationError: the document does not have that shape.
        ValueError: ``arms`` and ``counts`` name different bundles.
    """
    parsed = _ParamsDocument.model_validate(document)
    if parsed.arms.keys() != parsed.counts.keys():
        raise ValueError("policy params: 'arms' and 'counts' name different bundles")
    arms = tuple(
        Arm(
            bundle_id=bundle_id,
            impressions=parsed.counts[bundle_id][0],
            clicks=parsed.counts[bundle_id][1],
            alpha=alpha,
            beta=beta,
            reward=_reward_from_json(parsed.counts[bundle_id]),
        )
        for bundle_id, (alpha, beta) in sorted(parsed.arms.items())
    )
    return PolicyParams(
        temperature=parsed.temperature,
        ctr_weight=parsed.ctr_weight,
        prior_alpha=parsed.prior_alpha,
        prior_beta=parsed.prior_beta,
        arms=arms,
        log_positions=_positions_from_json(parsed.log_positions),
        exploration=parsed.exploration,
        epsilon=parsed.epsilon,
        window_positions=_positions_from_json(parsed.window_positions),
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
                policy_name=POLICY_NAME,
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
