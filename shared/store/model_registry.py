"""Trained ranking models: their artifacts on disk and their versions in PostgreSQL.

A model is published as an artifact file (the users' and bundles' vectors with their ids, whose dot
products are the model's scores) in a folder every ranker can read (a volume or an object-store
mount: ``BUNDLEWISE_MODEL_DIR``), and a ``model_versions`` row per catalog that names it. Versions
only grow: republishing an older artifact (a rollback) records it again under a higher version, so
"the newest version" is always what the rankers serve.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, func, insert, select

from shared.store import tables

FORMAT = "bundlewise-embedding-scorer-v1"


@dataclass(frozen=True)
class ModelArtifact:
    """Scores as dot products: ``user_vectors[u] @ bundle_vectors[b]`` for the ids at those rows."""

    model_name: str
    catalog_id: str
    user_ids: tuple[str, ...]
    bundle_ids: tuple[str, ...]
    user_vectors: npt.NDArray[np.float32]
    bundle_vectors: npt.NDArray[np.float32]
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.user_vectors.shape != (len(self.user_ids), self.bundle_vectors.shape[1]):
            raise ValueError(
                f"user_vectors has shape {self.user_vectors.shape}, expected "
                f"({len(self.user_ids)}, {self.bundle_vectors.shape[1]})"
            )
        if self.bundle_vectors.shape[0] != len(self.bundle_ids):
            raise ValueError(f"bundle_vectors has {self.bundle_vectors.shape[0]} rows for {len(self.bundle_ids)} ids")


@dataclass(frozen=True)
class ModelVersion:
    model_name: str
    catalog_id: str
    version: int
    artifact_uri: str
    metrics: dict[str, Any]

    @property
    def label(self) -> str:
        """What answers report as their model version, e.g. ``mf_bpr-v3``."""
        return f"{self.model_name}-v{self.version}"


def save_artifact(artifact: ModelArtifact, directory: Path) -> Path:
    """Writes ``artifact`` under ``directory`` (atomically) and returns its path, named by content."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".npz.tmp", delete=False) as handle:
        np.savez(
            handle,
            format=np.array(FORMAT),
            model_name=np.array(artifact.model_name),
            catalog_id=np.array(artifact.catalog_id),
            user_ids=np.array(artifact.user_ids),
            bundle_ids=np.array(artifact.bundle_ids),
            user_vectors=artifact.user_vectors.astype(np.float32),
            bundle_vectors=artifact.bundle_vectors.astype(np.float32),
        )
        temporary = Path(handle.name)
    digest = hashlib.sha256(temporary.read_bytes()).hexdigest()[:16]
    path = directory / f"{artifact.catalog_id}-{artifact.model_name}-{digest}.npz"
    os.replace(temporary, path)
    return path


def load_artifact(path: Path) -> ModelArtifact:
    """Reads an artifact written by :func:`save_artifact`.

    Raises:
        ValueError: the file is not such an artifact.
        OSError: it cannot be read.
    """
    with np.load(path, allow_pickle=False) as data:
        if "format" not in data or str(data["format"]) != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} artifact")
        return ModelArtifact(
            model_name=str(data["model_name"]),
            catalog_id=str(data["catalog_id"]),
            user_ids=tuple(str(u) for u in data["user_ids"]),
            bundle_ids=tuple(str(b) for b in data["bundle_ids"]),
            user_vectors=np.ascontiguousarray(data["user_vectors"], dtype=np.float32),
            bundle_vectors=np.ascontiguousarray(data["bundle_vectors"], dtype=np.float32),
        )


def publish(engine: Engine, artifact_path: Path, model_name: str, catalog_id: str, metrics: dict[str, Any]) -> int:
    """Records ``artifact_path`` as the newest version for ``catalog_id``; returns the version.

    Versions count per catalog, across model names; concurrent publishers queue on a per-catalog
    transaction lock, so each gets its own version.
    """
    versions = tables.model_versions
    with engine.begin() as conn:
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"model_versions:{catalog_id}"))))
        latest = conn.execute(
            select(func.coalesce(func.max(versions.c.version), 0)).where(versions.c.catalog_id == catalog_id)
        ).scalar_one()
        conn.execute(
            insert(versions).values(
                model_name=model_name,
                catalog_id=catalog_id,
                version=latest + 1,
                artifact_uri=artifact_path.resolve().as_uri(),
                metrics=metrics,
            )
        )
    return int(latest + 1)


def latest_versions(engine: Engine) -> dict[str, ModelVersion]:
    """The newest model version of every catalog that has one (versions count per catalog)."""
    versions = tables.model_versions
    newest = (
        select(versions.c.catalog_id, func.max(versions.c.version).label("version"))
        .group_by(versions.c.catalog_id)
        .subquery()
    )
    query = select(versions).join(
        newest, (versions.c.catalog_id == newest.c.catalog_id) & (versions.c.version == newest.c.version)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return {
        r["catalog_id"]: ModelVersion(r["model_name"], r["catalog_id"], r["version"], r["artifact_uri"], r["metrics"])
        for r in rows
    }


def artifact_path(uri: str) -> Path:
    """The local path of a ``file://`` artifact URI.

    Raises:
        ValueError: another scheme (object stores are mounted as folders; see docs/operations.md).
    """
    if not uri.startswith("file://"):
        raise ValueError(f"artifact {uri!r}: only file:// URIs are served; mount the store as a folder")
    return Path(uri.removeprefix("file://"))
