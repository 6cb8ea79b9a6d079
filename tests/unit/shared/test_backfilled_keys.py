"""A rebuild of Redis keeps what only a backfill can remake (encoder outputs) and drops the rest."""

from __future__ import annotations

from shared.store.redis_keys import NamespaceKeys, made_by_backfill


def test_bundle_and_item_vectors_are_kept_by_a_rebuild_and_mirrored_features_are_not() -> None:
    keys = NamespaceKeys("live").catalog("amazon")

    kept = [
        keys.bundle_vectors(),
        keys.bundle_vector_digests(),
        keys.bundle_vectors_meta(),
        keys.item_vectors(),
        keys.item_vector_digests(),
        keys.item_vectors_meta(),
    ]
    dropped = [keys.item("i1"), keys.bundle("b1"), keys.live_bundles(), keys.catalog_version(), keys.item_bundles("i1")]

    assert all(made_by_backfill(key) for key in kept)
    assert not any(made_by_backfill(key) for key in dropped)
    assert made_by_backfill(keys.item_vectors().encode())
