"""Specification of typed bundle search's pure parts: the document a bundle is found by, the index's
order (exact and HNSW) and the search use case's filtering and refusals (the vector codec:
tests/unit/shared/test_bundle_vector_format.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from services.featurestore.backfill_vectors import MAX_DOCUMENT_CHARS, bundle_document
from services.featurestore.vector_sync import document_digest
from services.ranker.domain import BundleInfo, ItemInfo, UserSignals
from services.ranker.ports import QueryVector
from services.ranker.search import BundleSearch, SearchNotReady, explain
from services.ranker.vector_index import BundleVectors, VectorIndex
from shared.errors import NotFound


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_a_document_is_each_titles_with_its_category_path_without_the_root() -> None:
    document = bundle_document(
        [
            ("Canon  EOS 80D\nbody", ("Electronics", "Camera & Photo", "Digital Cameras")),
            ("", ("Electronics", "Cables")),
            ("Lens cap", ()),
            ("Strap", ("Accessories",)),
        ]
    )

    assert document == "Canon EOS 80D body (Camera & Photo > Digital Cameras); Lens cap; Strap (Accessories)"


def test_a_long_document_is_cut() -> None:
    document = bundle_document([("word " * 400, ("Root", "Leaf"))] * 3)

    assert len(document) == MAX_DOCUMENT_CHARS


def test_the_digest_changes_with_the_encoder_version_and_with_the_text() -> None:
    digest = document_digest("e5@1", "tent")

    assert digest == document_digest("e5@1", "tent")
    assert digest != document_digest("e5@2", "tent")
    assert digest != document_digest("e5@1", "tents")


@pytest.mark.parametrize("exact_max", [100, 0], ids=["exact", "hnsw"])
def test_the_index_answers_the_most_similar_first_with_cosine_scores(exact_max: int) -> None:
    ids = ["far", "near", "middle", "opposite"]
    vectors = np.stack([unit(0, 1, 0), unit(1, 0.1, 0), unit(1, 1, 0), unit(-1, 0, 0)])
    index = VectorIndex(ids, vectors, exact_max=exact_max)

    hits = index.search(unit(1, 0, 0), 3)

    assert index.exact is (exact_max == 100)
    assert [bundle_id for bundle_id, _ in hits] == ["near", "middle", "far"]
    assert hits[0][1] == pytest.approx(float(unit(1, 0.1, 0)[0]), abs=1e-6)
    assert hits[1][1] == pytest.approx(2**-0.5, abs=1e-6)


def test_equal_scores_come_in_id_order_and_n_is_capped_by_the_index_size() -> None:
    index = VectorIndex(["b", "a"], np.stack([unit(1, 0), unit(1, 0)]))

    hits = index.search(unit(1, 0), 10)

    assert [bundle_id for bundle_id, _ in hits] == ["a", "b"]
    assert [score for _, score in hits] == pytest.approx([1.0, 1.0])


def test_a_query_of_another_dimension_is_refused() -> None:
    index = VectorIndex(["a"], np.stack([unit(1, 0)]))

    with pytest.raises(ValueError, match="query vector"):
        index.search(unit(1, 0, 0), 1)


def test_an_explanation_quotes_the_query_and_cuts_a_long_one() -> None:
    assert explain("  camera   kit ") == "Matches your search “camera kit”"
    assert explain("相机套装") == "Matches your search “相机套装”"
    long = explain("tent " * 30)
    assert long.endswith("…”")
    assert len(long) == len("Matches your search “”") + 60


# --- the use case, over in-memory ports ------------------------------------------------------------


def bundle(bundle_id: str, items: tuple[str, ...], retired: bool = False) -> BundleInfo:
    return BundleInfo(bundle_id, f"name of {bundle_id}", items, None, None, retired, 0)


def item(item_id: str, retired: bool = False, price: float | None = 10.0) -> ItemInfo:
    return ItemInfo(item_id, f"title of {item_id}", price, "", retired, ("Root", "Leaf"))


class Catalog:
    """The FeatureSource and BundleVectorSource reads a search makes."""

    def __init__(self, bundles: dict[str, BundleInfo], items: dict[str, ItemInfo], vectors: BundleVectors | None):
        self._bundles, self._items, self._vectors = bundles, items, vectors

    def settle_catalog(self, catalog_id: str) -> None:
        pass

    def bundle_vectors(self, catalog_id: str) -> BundleVectors | None:
        return self._vectors

    def bundles(self, catalog_id: str, bundle_ids: Sequence[str]) -> dict[str, BundleInfo]:
        return {b: self._bundles[b] for b in bundle_ids if b in self._bundles}

    def items(self, catalog_id: str, item_ids: Sequence[str]) -> dict[str, ItemInfo]:
        return {i: self._items[i] for i in item_ids if i in self._items}

    def popular_bundles(self, catalog_id: str, k: int) -> list[str]:
        if not self._bundles:
            raise NotFound(f"catalog {catalog_id!r} has no live bundles")
        return sorted(self._bundles)[:k]

    def user_signals(self, catalog_id: str, user_id: str) -> UserSignals:
        raise AssertionError("search reads no shopper")

    def neighbours(self, catalog_id: str, item_ids: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
        raise AssertionError("search reads no co-purchases")

    def bundles_by_item(self, catalog_id: str, item_ids: Sequence[str]) -> dict[str, list[str]]:
        raise AssertionError("search reads no item index")

    def bundles_by_category(self, catalog_id: str, categories: Sequence[str]) -> dict[str, list[str]]:
        raise AssertionError("search reads no category index")


class FixedEncoder:
    def __init__(self, vector: np.ndarray, version: str = "e5@1") -> None:
        self.vector, self.version = vector, version
        self.asked: list[tuple[str, str]] = []

    def embed_query(self, text: str, model: str) -> QueryVector:
        self.asked.append((text, model))
        return QueryVector(self.vector, self.version)


def vectors_of(rows: dict[str, np.ndarray]) -> BundleVectors:
    ids = sorted(rows)
    return BundleVectors("e5", "e5@1", VectorIndex(ids, np.stack([rows[b] for b in ids])), without_vector=0)


def test_search_answers_servable_bundles_best_first_leaving_out_retired_ones() -> None:
    catalog = Catalog(
        bundles={
            "tent": bundle("tent", ("t1", "t2")),
            "stove": bundle("stove", ("s1",)),
            "old": bundle("old", ("o1",), retired=True),
            "broken": bundle("broken", ("t1", "gone")),
        },
        items={
            "t1": item("t1"),
            "t2": item("t2"),
            "s1": item("s1", price=None),
            "o1": item("o1"),
            "gone": item("gone", retired=True),
        },
        vectors=vectors_of({"tent": unit(1, 0.2), "stove": unit(0.2, 1), "old": unit(1, 0), "broken": unit(1, 0.1)}),
    )
    encoder = FixedEncoder(unit(1, 0))

    result = BundleSearch(catalog, catalog, encoder).search("amazon", "tent for two", 5)

    assert [hit.bundle.bundle_id for hit in result.hits] == ["tent", "stove"]
    assert [item.item_id for item in result.hits[0].items] == ["t1", "t2"]
    assert result.hits[0].score > result.hits[1].score
    assert result.hits[0].total_price == 20.0
    assert result.hits[1].total_price is None
    assert result.hits[0].explanation == "Matches your search “tent for two”"
    assert result.model_version == "e5@1"
    assert encoder.asked == [("tent for two", "e5")]


def test_search_stops_at_k() -> None:
    rows = {f"b{n}": unit(1, n / 10) for n in range(6)}
    catalog = Catalog(
        {b: bundle(b, (f"i{b}",)) for b in rows}, {f"i{b}": item(f"i{b}") for b in rows}, vectors_of(rows)
    )

    result = BundleSearch(catalog, catalog, FixedEncoder(unit(1, 0))).search("shop", "q", 2)

    assert [hit.bundle.bundle_id for hit in result.hits] == ["b0", "b1"]


def test_a_catalog_without_vectors_is_not_ready_and_one_without_bundles_is_not_found() -> None:
    unembedded = Catalog({"tent": bundle("tent", ("t1",))}, {"t1": item("t1")}, vectors=None)
    empty = Catalog({}, {}, vectors=None)

    with pytest.raises(SearchNotReady, match="backfill-vectors --catalogs amazon"):
        BundleSearch(unembedded, unembedded, FixedEncoder(unit(1, 0))).search("amazon", "tent", 3)
    with pytest.raises(NotFound):
        BundleSearch(empty, empty, FixedEncoder(unit(1, 0))).search("amazon", "tent", 3)


def test_vectors_of_another_encoder_version_are_not_compared() -> None:
    catalog = Catalog({"tent": bundle("tent", ("t1",))}, {"t1": item("t1")}, vectors_of({"tent": unit(1, 0)}))

    with pytest.raises(SearchNotReady, match="e5@1 but the embedding service runs e5@2"):
        BundleSearch(catalog, catalog, FixedEncoder(unit(1, 0), version="e5@2")).search("amazon", "tent", 3)
