"""Turning a trained Youshu model into a served one: an artifact file and a version row.

The ids follow the Youshu catalog as ``bundlewise load-catalogs --catalogs youshu`` loads it (user
``u<row>``, bundle ``b<row>``), so the ranker finds the shoppers and bundles it is asked about.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from services.ranker.offline.evaluation import EmbeddingScorer
from shared.store.model_registry import ModelArtifact, publish, save_artifact

YOUSHU_CATALOG = "youshu"


def youshu_artifact(scorer: EmbeddingScorer, model_name: str, metrics: dict[str, float]) -> ModelArtifact:
    users, bundles = scorer.user_vectors.detach().cpu().numpy(), scorer.bundle_vectors.detach().cpu().numpy()
    return ModelArtifact(
        model_name=model_name,
        catalog_id=YOUSHU_CATALOG,
        user_ids=tuple(f"u{row}" for row in range(users.shape[0])),
        bundle_ids=tuple(f"b{row}" for row in range(bundles.shape[0])),
        user_vectors=users,
        bundle_vectors=bundles,
        metrics=metrics,
    )


def publish_artifact(artifact: ModelArtifact, model_dir: Path, engine: Engine) -> tuple[int, Path]:
    """Saves ``artifact`` under ``model_dir`` and records it as its catalog's newest version."""
    path = save_artifact(artifact, model_dir)
    version = publish(engine, path, artifact.model_name, artifact.catalog_id, artifact.metrics)
    return version, path
