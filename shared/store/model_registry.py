"""Trained ranking models: their artifacts on disk and their versions in PostgreSQL.

A model is published as an artifact file in a folder every ranker can read (a volume or an
object-store mount: ``BUNDLEWISE_MODEL_DIR``): the users' and bundles' vectors with their ids, whose
dot products are the model's scores, and optionally the weights and bundle contents of exact
item-level terms added to them (``services.ranker.item_terms``), and optionally how a bundle the
model was not trained on gets a vector from its items (:class:`NewBundleVectors`). PostgreSQL holds a
``model_versions`` row per catalog that names it. Versions only grow: republishing an older artifact
(a rollback) records it again under a higher version, so "the newest version" is always what the
rankers serve.
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
# v1 plus item-level terms. A ranker that predates the terms refuses such an artifact and keeps the
# model it serves, rather than serve it without them.
FORMAT_WITH_ITEM_TERMS = "bundlewise-embedding-scorer-v2"
# v2 plus the vectors of bundles synced after training; a v2 ranker refuses it the same way.
FORMAT_WITH_NEW_BUNDLES = "bundlewise-embedding-scorer-v3"
FORMATS = (FORMAT, FORMAT_WITH_ITEM_TERMS, FORMAT_WITH_NEW_BUNDLES)


@dataclass(frozen=True)
class ItemTermsArtifact:
    """Exact item-level terms scored beside the vectors: their weights, and the bundle contents they
    were chosen with as (bundle row, item column) pairs over ``item_ids``."""

    overlap_weight: float
    related_weight: float
    item_ids: tuple[str, ...]
    pair_bundle_rows: npt.NDArray[np.int32]
    pair_item_columns: npt.NDArray[np.int32]

    def check(self, n_bundles: int) -> None:
        """Raises ValueError unless the pairs index ``n_bundles`` bundles and ``item_ids``."""
        rows, columns = self.pair_bundle_rows, self.pair_item_columns
        if rows.ndim != 1 or rows.shape != columns.shape:
            raise ValueError(f"item terms: pair arrays of shapes {rows.shape} and {columns.shape}, expected equal 1-d")
        if rows.size and (rows.min() < 0 or rows.max() >= n_bundles):
            raise ValueError(f"item terms: a pair names a bundle row outside 0..{n_bundles - 1}")
        if columns.size and (columns.min() < 0 or columns.max() >= len(self.item_ids)):
            raise ValueError(f"item terms: a pair names an item column outside 0..{len(self.item_ids) - 1}")


@dataclass(frozen=True)
class NewBundleVectors:
    """How a bundle the model was not trained on (synced to the catalog later) gets a vector from its
    items, as a cross-view model scores a bundle without training pairs (``services.ranker.offline.models``).

    The model's bundle vectors are, for each of its ``members`` side by side, a bundle-view part and
    an item-view part of ``member_dim`` columns each, then a prior column when ``prior`` is not None.
    A new bundle's item-view part is the mean of its items' rows of ``item_vectors`` (rows: the item
    terms' ``item_ids``; each member's ``member_dim`` columns in turn); its bundle-view part is that
    mean's direction at ``bundle_view_lengths[member]``; its prior is ``prior``.
    """

    item_vectors: npt.NDArray[np.float32]
    bundle_view_lengths: tuple[float, ...]
    prior: float | None

    @property
    def members(self) -> int:
        return len(self.bundle_view_lengths)

    @property
    def member_dim(self) -> int:
        return int(self.item_vectors.shape[1]) // max(self.members, 1)

    def check(self, n_items: int, bundle_dim: int) -> None:
        """Raises ValueError unless the vectors fit ``n_items`` items and bundle vectors of ``bundle_dim``."""
        if self.item_vectors.ndim != 2 or self.item_vectors.shape[0] != n_items:
            raise ValueError(f"new bundles: item vectors of shape {self.item_vectors.shape}, expected {n_items} rows")
        if not self.members or self.item_vectors.shape[1] % self.members:
            raise ValueError(
                f"new bundles: {self.item_vectors.shape[1]} item-vector columns do not split into "
                f"{self.members} members"
            )
        expected = 2 * self.item_vectors.shape[1] + (0 if self.prior is None else 1)
        if bundle_dim != expected:
            raise ValueError(f"new bundles: bundle vectors have {bundle_dim} columns, the item vectors make {expected}")


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
    item_terms: ItemTermsArtifact | None = None
    new_bundles: NewBundleVectors | None = None

    def __post_init__(self) -> None:
        if self.user_vectors.shape != (len(self.user_ids), self.bundle_vectors.shape[1]):
            raise ValueError(
                f"user_vectors has shape {self.user_vectors.shape}, expected "
                f"({len(self.user_ids)}, {self.bundle_vectors.shape[1]})"
            )
        if self.bundle_vectors.shape[0] != len(self.bundle_ids):
            raise ValueError(f"bundle_vectors has {self.bundle_vectors.shape[0]} rows for {len(self.bundle_ids)} ids")
        if self.item_terms is not None:
            self.item_terms.check(len(self.bundle_ids))
        if self.new_bundles is not None:
            if self.item_terms is None:
                raise ValueError("new-bundle vectors read the item terms' item ids: the artifact has no item terms")
            self.new_bundles.check(len(self.item_terms.item_ids), self.bundle_vectors.shape[1])


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
    terms, new = artifact.item_terms, artifact.new_bundles
    layout = FORMAT if terms is None else FORMAT_WITH_ITEM_TERMS if new is None else FORMAT_WITH_NEW_BUNDLES
    arrays: dict[str, npt.NDArray[Any]] = {
        "format": np.array(layout),
        "model_name": np.array(artifact.model_name),
        "catalog_id": np.array(artifact.catalog_id),
        "user_ids": np.array(artifact.user_ids),
        "bundle_ids": np.array(artifact.bundle_ids),
        "user_vectors": artifact.user_vectors.astype(np.float32),
        "bundle_vectors": artifact.bundle_vectors.astype(np.float32),
    }
    if terms is not None:
        arrays |= {
            "terms_weights": np.array([terms.overlap_weight, terms.related_weight], dtype=np.float64),
            "terms_item_ids": np.array(terms.item_ids),
            "terms_pair_bundle_rows": terms.pair_bundle_rows.astype(np.int32),
            "terms_pair_item_columns": terms.pair_item_columns.astype(np.int32),
        }
    if new is not None:
        arrays |= {
            "new_item_vectors": new.item_vectors.astype(np.float32),
            "new_bundle_view_lengths": np.array(new.bundle_view_lengths, dtype=np.float64),
            "new_prior": np.array([] if new.prior is None else [new.prior], dtype=np.float64),
        }
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".npz.tmp", delete=False) as handle:
        np.savez(handle, allow_pickle=False, **arrays)
        temporary = Path(handle.name)
    # NamedTemporaryFile makes it readable by its owner alone; rankers may run as another user.
    temporary.chmod(0o644)
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
        if "format" not in data or str(data["format"]) not in FORMATS:
            raise ValueError(f"{path} is not an artifact of a known format ({', '.join(FORMATS)})")
        terms, new = None, None
        if str(data["format"]) in (FORMAT_WITH_ITEM_TERMS, FORMAT_WITH_NEW_BUNDLES):
            overlap, related = (float(w) for w in data["terms_weights"])
            terms = ItemTermsArtifact(
                overlap_weight=overlap,
                related_weight=related,
                item_ids=tuple(str(i) for i in data["terms_item_ids"]),
                pair_bundle_rows=np.asarray(data["terms_pair_bundle_rows"], dtype=np.int32),
                pair_item_columns=np.asarray(data["terms_pair_item_columns"], dtype=np.int32),
            )
        if str(data["format"]) == FORMAT_WITH_NEW_BUNDLES:
            prior = [float(p) for p in data["new_prior"]]
            new = NewBundleVectors(
                item_vectors=np.ascontiguousarray(data["new_item_vectors"], dtype=np.float32),
                bundle_view_lengths=tuple(float(length) for length in data["new_bundle_view_lengths"]),
                prior=prior[0] if prior else None,
            )
        return ModelArtifact(
            model_name=str(data["model_name"]),
            catalog_id=str(data["catalog_id"]),
            user_ids=tuple(str(u) for u in data["user_ids"]),
            bundle_ids=tuple(str(b) for b in data["bundle_ids"]),
            user_vectors=np.ascontiguousarray(data["user_vectors"], dtype=np.float32),
            bundle_vectors=np.ascontiguousarray(data["bundle_vectors"], dtype=np.float32),
            item_terms=terms,
            new_bundles=new,
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
