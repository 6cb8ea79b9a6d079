"""``python -m services.ranker.search_eval``: how well typed search finds the Amazon bundles.

Each BundleRec_Amazon bundle was named by an annotator after its intent ("camera kit", "jewelry
set"); that name is a real shopper's query whose answer is the bundle. The bundle's document holds
only its items' titles and category paths (:func:`services.featurestore.backfill_vectors.bundle_document`,
the one the backfill embeds), never its name, so the name is not looked up, it is matched.

For every bundle the name is searched over the whole catalog (3,660 bundles, both domains) through
:class:`services.ranker.vector_index.VectorIndex`, the ranker's index. Reported:

- ``recall_at_10``: share of bundles ranked in the first 10 for their own name.
- ``mrr``: mean reciprocal rank of the bundle for its own name (full ranking).
- ``recall_at_10_same_name``: share of queries whose first 10 hold a bundle of exactly that name
  (several bundles share a name: 30 are "camera accessories"; any of them answers the query).

Encoding runs in process with the embedding service's own encoder class
(:class:`services.embedding.text_encoder.E5TextEncoder`, float32 on the CPU, 128 word pieces as the
service's default), not over gRPC: the vectors are the service's (same weights, prefixes, pooling)
and the run needs no stack. Passage vectors are cached under ``var/search_eval/`` by encoder version
and documents, so a rerun encodes only the queries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.provenance import REPO_ROOT, run_metadata
from services.embedding.device import DevicePlacement
from services.embedding.settings import ModelCacheSettings
from services.embedding.text_encoder import E5TextEncoder, TextRole
from services.featurestore.backfill_vectors import bundle_document
from services.featurestore.real_catalogs import load_amazon
from services.ranker.vector_index import VectorIndex
from shared.datasets import default_data_dir
from shared.store.vectors import Vector

MODULE = "services.ranker.search_eval"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "bundle_search.json"
CACHE_DIR = REPO_ROOT / "var" / "search_eval"
# As the embedding service by default (BUNDLEWISE_EMBEDDING_MAX_TOKENS).
MAX_TOKENS = 128
BATCH = 32
K = 10
EXAMPLES = ("camera accessories", "jewelry set", "external storage", "kid clothes", "assembling a desktop")


def encode(encoder: E5TextEncoder, texts: Sequence[str], role: TextRole, label: str) -> Vector:
    """Vectors of ``texts`` in order, with progress on stderr; batches of similar length (shortest
    first), so little time goes to padding."""
    started = time.perf_counter()
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), BATCH):
        batch = order[start : start + BATCH]
        out[batch] = encoder.encode([texts[i] for i in batch], role)
        done = start + len(batch)
        if done % (BATCH * 20) == 0 or done == len(texts):
            print(f"  {label}: {done}/{len(texts)} ({time.perf_counter() - started:.0f}s)", file=sys.stderr, flush=True)
    return out


def cached_passages(encoder: E5TextEncoder, documents: Sequence[str]) -> tuple[Vector, bool]:
    """Passage vectors of ``documents``, from ``var/search_eval/`` when this encoder made them before."""
    digest = hashlib.sha256("\n".join([encoder.version, *documents]).encode()).hexdigest()[:16]
    path = CACHE_DIR / f"passages-{digest}.npy"
    if path.exists():
        return np.load(path), True
    vectors = encode(encoder, documents, TextRole.PASSAGE, "bundle documents")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors, False


def rank_of(index: VectorIndex, passages: Vector, position: int, query: Vector) -> tuple[int, list[str]]:
    """1-based rank of the bundle at ``position`` for ``query`` over the whole catalog, and the ids
    of the first K by the index (the rank counts the bundles scoring strictly higher)."""
    scores = passages @ query
    return 1 + int(np.sum(scores > scores[position])), [b for b, _ in index.search(query, K)]


def evaluate(data_dir: Path, model_cache: Path) -> dict[str, Any]:
    started = time.perf_counter()
    catalog = load_amazon(data_dir)
    items = {item.item_id: item for item in catalog.items}
    bundles = sorted(catalog.bundles, key=lambda b: b.bundle_id)
    documents = [
        bundle_document([(items[i].title, items[i].category_path) for i in b.item_ids if i in items]) for b in bundles
    ]
    torch.set_num_threads(2)
    encoder = E5TextEncoder.from_cache(model_cache, DevicePlacement(torch.device("cpu"), torch.float32), MAX_TOKENS)
    passages, from_cache = cached_passages(encoder, documents)
    passages_s = time.perf_counter() - started
    index = VectorIndex([b.bundle_id for b in bundles], passages)

    names = sorted({" ".join(b.name.split()) for b in bundles})
    query_started = time.perf_counter()
    query_vectors = dict(zip(names, encode(encoder, names, TextRole.QUERY, "queries"), strict=True))
    queries_s = time.perf_counter() - query_started

    name_of = {b.bundle_id: " ".join(b.name.split()) for b in bundles}
    per_domain: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    first_k: dict[str, list[str]] = {}
    for position, bundle in enumerate(bundles):
        query = name_of[bundle.bundle_id]
        rank, top = rank_of(index, passages, position, query_vectors[query])
        first_k.setdefault(query, top)
        same_name_found = any(name_of[b] == query for b in top)
        per_domain[bundle.bundle_id.split("-", 1)[0]].append((rank, same_name_found))

    def metrics(outcomes: list[tuple[int, bool]]) -> dict[str, float | int]:
        return {
            "queries": len(outcomes),
            "recall_at_10": round(sum(rank <= K for rank, _ in outcomes) / len(outcomes), 4),
            "mrr": round(sum(1.0 / rank for rank, _ in outcomes) / len(outcomes), 4),
            "recall_at_10_same_name": round(sum(found for _, found in outcomes) / len(outcomes), 4),
        }

    everything = [outcome for outcomes in per_domain.values() for outcome in outcomes]
    return {
        "dataset": "BundleRec_Amazon (electronic + clothing), every bundle",
        "query": "the bundle's name (its annotated intent)",
        "document": "the bundle's item titles with their category paths (not its name)",
        "encoder": encoder.version,
        "encoder_placement": "in process, CPU float32, 128 word pieces (the embedding service's defaults)",
        "index": "exact inner product (faiss IndexFlatIP) on L2-normalised vectors" if index.exact else "faiss HNSW",
        "bundles": len(bundles),
        "distinct_queries": len(names),
        "random_recall_at_10": round(K / len(bundles), 4),
        "overall": metrics(everything),
        "by_domain": {domain: metrics(outcomes) for domain, outcomes in sorted(per_domain.items())},
        "examples": {
            query: [f"{b} ({name_of[b]})" for b in first_k[query][:3]] for query in EXAMPLES if query in first_k
        },
        "seconds": {
            "passages": round(passages_s, 1),
            "passages_from_cache": from_cache,
            "queries": round(queries_s, 1),
            "total": round(time.perf_counter() - started, 1),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: $BUNDLEWISE_DATA_DIR or ../shared/data")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT.relative_to(REPO_ROOT)}")
    args = parser.parse_args(argv)
    result = evaluate(args.data_dir or default_data_dir(), ModelCacheSettings().model_cache)
    document = {"benchmark": "bundle_search", **run_metadata(MODULE, argv), "results": result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    overall = result["overall"]
    print(
        f"{overall['queries']} queries over {result['bundles']} bundles: Recall@10 {overall['recall_at_10']:.3f}, "
        f"MRR {overall['mrr']:.3f}, same-name Recall@10 {overall['recall_at_10_same_name']:.3f} "
        f"(random {result['random_recall_at_10']:.4f}); written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
