"""Turning a trained Youshu model into a served one: an artifact file and a version row.

The ids follow the Youshu catalog as ``bundlewise load-catalogs --catalogs youshu`` loads it (user
``u<row>``, bundle ``b<row>``, item ``i<row>``), so the ranker finds the shoppers, bundles and items it
is asked about.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from services.ranker.item_terms import ItemTermWeights
from services.ranker.offline.data import BundleRecData
from services.ranker.offline.evaluation import EmbeddingScorer
from shared.store.model_registry import ItemTermsArtifact, ModelArtifact, NewBundleVectors, publish, save_artifact

YOUSHU_CATALOG = "youshu"


def youshu_item_terms(data: BundleRecData, weights: ItemTermWeights) -> ItemTermsArtifact:
    """Item-level terms over Youshu's bundle contents, as the ranker scores them beside the vectors."""
    pairs = data.bundle_item_pairs.numpy()
    return ItemTermsArtifact(
        overlap_weight=weights.overlap,
        related_weight=weights.related,
        item_ids=tuple(f"i{row}" for row in range(data.n_items)),
        pair_bundle_rows=pairs[:, 0].astype(np.int32),
        pair_item_columns=pairs[:, 1].astype(np.int32),
    )


def youshu_artifact(
    scorer: EmbeddingScorer,
    model_name: str,
    metrics: dict[str, float],
    item_terms: ItemTermsArtifact | None = None,
    new_bundles: NewBundleVectors | None = None,
) -> ModelArtifact:
    users, bundles = scorer.user_vectors.detach().cpu().numpy(), scorer.bundle_vectors.detach().cpu().numpy()
    return ModelArtifact(
        model_name=model_name,
        catalog_id=YOUSHU_CATALOG,
        user_ids=tuple(f"u{row}" for row in range(users.shape[0])),
        bundle_ids=tuple(f"b{row}" for row in range(bundles.shape[0])),
        user_vectors=users,
        bundle_vectors=bundles,
        metrics=metrics,
        item_terms=item_terms,
        new_bundles=new_bundles,
    )


def publish_artifact(artifact: ModelArtifact, model_dir: Path, engine: Engine) -> tuple[int, Path]:
    """Saves ``artifact`` under ``model_dir`` and records it as its catalog's newest version."""
    path = save_artifact(artifact, model_dir)
    version = publish(engine, path, artifact.model_name, artifact.catalog_id, artifact.metrics)
    return version, path
