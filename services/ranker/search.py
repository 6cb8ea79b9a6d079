"""Typed search for bundles: a shopper's query in, the catalog's best matching live bundles out.

The query is embedded by the embedding service (the "query" side of e5) and compared with the
bundles' passage vectors (their items' titles and category paths, see
:func:`services.featurestore.backfill_vectors.bundle_document`) in the catalog copy's index.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from services.ranker import domain
from services.ranker.domain import BundleInfo, ItemInfo, UserSignals
from services.ranker.ports import BundleVectorSource, FeatureSource, QueryEncoder
from shared.errors import BundlewiseError

MAX_QUERY_CHARS = 500
# Bundles read per bundle wanted: room for those retired since the copy was made.
CANDIDATES_PER_SLOT = 3
# Quoted queries are cut to this many characters in explanations.
EXPLAINED_QUERY_CHARS = 60
NOBODY = UserSignals(recent_item_ids=(), purchased_bundle_ids=frozenset(), top_categories=())


class SearchNotReady(BundlewiseError):
    """The catalog has no bundle vectors comparable with the query encoder's (FAILED_PRECONDITION)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 503


class SearchNotConfigured(BundlewiseError):
    """This ranker cannot search: no embedding service, or no in-process catalog copy (UNIMPLEMENTED)."""

    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    http_status = 501


@dataclass(frozen=True)
class SearchHit:
    bundle: BundleInfo
    items: tuple[ItemInfo, ...]
    score: float
    """Cosine similarity of the query and the bundle's vector, in [-1, 1]."""
    total_price: float | None
    explanation: str


@dataclass(frozen=True)
class SearchResult:
    hits: tuple[SearchHit, ...]
    model_version: str


def explain(query: str) -> str:
    """The reason shown with every hit: the query, quoted (cut with an ellipsis when long)."""
    text = " ".join(query.split())
    if len(text) > EXPLAINED_QUERY_CHARS:
        text = text[: EXPLAINED_QUERY_CHARS - 1].rstrip() + "…"
    return f"Matches your search “{text}”"


class BundleSearch:
    """Searches one catalog's bundle vectors with a query embedded by ``encoder``."""

    def __init__(self, features: FeatureSource, vectors: BundleVectorSource, encoder: QueryEncoder) -> None:
        self._features = features
        self._vectors = vectors
        self._encoder = encoder

    def search(self, catalog_id: str, query: str, k: int) -> SearchResult:
        """At most ``k`` live bundles, best match first; never a retired bundle or one holding a
        retired item. Bundles synced after the last backfill have no vector and are not found.

        Raises:
            shared.errors.NotFound: the catalog has no live bundles.
            SearchNotReady: the catalog has no bundle vectors, or they are of another encoder version
                than the embedding service's now.
            shared.errors.Unavailable: the embedding service or Redis did not answer in time.
        """
        self._features.settle_catalog(catalog_id)
        vectors = self._vectors.bundle_vectors(catalog_id)
        if vectors is None or not len(vectors.index):
            self._features.popular_bundles(catalog_id, 1)  # NotFound for a catalog with no live bundles
            raise SearchNotReady(
                f"catalog {catalog_id!r} has no bundle vectors yet; run `bundlewise backfill-vectors "
                f"--catalogs {catalog_id}`"
            )
        query_vector = self._encoder.embed_query(query, vectors.model)
        if query_vector.model_version != vectors.model_version:
            raise SearchNotReady(
                f"catalog {catalog_id!r} has bundle vectors of {vectors.model_version} but the embedding service "
                f"runs {query_vector.model_version}; run `bundlewise backfill-vectors --catalogs {catalog_id}`"
            )
        nearest = vectors.index.search(query_vector.values, CANDIDATES_PER_SLOT * k)
        bundles = self._features.bundles(catalog_id, [bundle_id for bundle_id, _ in nearest])
        items = self._features.items(catalog_id, list(dict.fromkeys(i for b in bundles.values() for i in b.item_ids)))
        reason = explain(query)
        hits = []
        for bundle_id, score in nearest:
            bundle = bundles.get(bundle_id)
            if bundle is None or not domain.is_servable(bundle, items, NOBODY):
                continue
            hits.append(
                SearchHit(
                    bundle=bundle,
                    items=tuple(items[i] for i in bundle.item_ids if i in items),
                    score=score,
                    total_price=domain.effective_price(bundle, items),
                    explanation=reason,
                )
            )
            if len(hits) == k:
                break
        return SearchResult(tuple(hits), vectors.model_version)
