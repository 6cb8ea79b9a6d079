"""What both halves of ``bundlewise backfill-vectors`` do once they know each entity's digest: embed
the entities whose digest changed, in batches with a progress line, then write the vectors, their
digests and the meta hash in one transaction (removing the entities gone), marking the catalog
changed (``shared.store.catalog.mark_changed``) when anything changed, so every ranker reloads its
copy."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import redis

from shared.store.catalog import mark_changed
from shared.store.redis_keys import NamespaceKeys
from shared.store.vectors import vector_to_field

CHUNK = 1000
"""Fields per HSET/HDEL command inside the transaction."""


def document_digest(model_version: str, document: str) -> str:
    """What a stored vector was made from: the model version and the text it embedded."""
    return hashlib.sha256(f"{model_version}\n{document}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class VectorHashes:
    """Where one kind of vector lives in a catalog: vectors, digests and meta (model, version, dim)."""

    vectors: str
    digests: str
    meta: str


@dataclass(frozen=True)
class SyncCounts:
    embedded: int
    unchanged: int
    removed: int


def sync_vectors(
    client: redis.Redis,
    namespace: NamespaceKeys,
    catalog_id: str,
    hashes: VectorHashes,
    digests: Mapping[str, str],
    encode: Callable[[Sequence[str]], Sequence[np.ndarray]],
    batch: int,
    model: tuple[str, str, int],
    progress: Callable[[int, int], None],
) -> SyncCounts:
    """Embeds (``encode`` of ids, ``batch`` at a time) the ids of ``digests`` whose stored digest
    differs, and writes everything in one MULTI with ``model`` (name, version, dimension) as the
    meta; ``progress(done, todo)`` after each batch.

    Nothing is written when ``encode`` raises: a run fails whole or lands whole."""
    stored: Mapping[str, str] = client.hgetall(hashes.digests)  # type: ignore[assignment]
    todo = sorted(i for i, digest in digests.items() if stored.get(i) != digest)
    vectors: dict[str, str] = {}
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        for entity_id, vector in zip(chunk, encode(chunk), strict=True):
            vectors[entity_id] = vector_to_field(vector)
        progress(start + len(chunk), len(todo))
    gone = sorted(set(stored) - set(digests))
    pipe = client.pipeline(transaction=True)
    for start in range(0, len(gone), CHUNK):
        pipe.hdel(hashes.vectors, *gone[start : start + CHUNK])
        pipe.hdel(hashes.digests, *gone[start : start + CHUNK])
    ids = sorted(vectors)
    for start in range(0, len(ids), CHUNK):
        chunk_ids = ids[start : start + CHUNK]
        pipe.hset(hashes.vectors, mapping={i: vectors[i] for i in chunk_ids})
        pipe.hset(hashes.digests, mapping={i: digests[i] for i in chunk_ids})
    name, version, dim = model
    pipe.hset(hashes.meta, mapping={"model": name, "model_version": version, "dim": str(dim)})
    if vectors or gone:
        mark_changed(pipe, namespace, catalog_id)
    pipe.execute()
    return SyncCounts(embedded=len(vectors), unchanged=len(digests) - len(todo), removed=len(gone))


def progress_printer(catalog_id: str, noun: str) -> Callable[[int, int], None]:
    """Prints ``  <catalog>: embedded <done>/<todo> <noun> (<seconds>s)`` from when it is made."""
    started = time.perf_counter()

    def report(done: int, todo: int) -> None:
        print(f"  {catalog_id}: embedded {done}/{todo} {noun} ({time.perf_counter() - started:.1f}s)", flush=True)

    return report
