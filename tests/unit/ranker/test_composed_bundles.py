"""Specification of the bundle the ranker composes around an anchor item: its co-purchases first, and,
for an item too new to have any, the live items nearest it in the item space (the embedding
service's item fusion)."""

from __future__ import annotations

import numpy as np

from services.ranker import domain
from services.ranker.domain import BundleInfo, ItemInfo, PolicyParams, UserSignals
from services.ranker.recommender import COMPLETE_THE_SET, GENERATED_BUNDLE_SIZE, GOES_WITH_IT, Recommender
from services.ranker.vector_index import ItemVectors, VectorIndex
from tests.unit.ranker.in_memory_shop import InMemoryShop

CATALOG = "cameras"
NOBODY = UserSignals((), frozenset(), ())


def item(item_id: str, retired: bool = False) -> ItemInfo:
    return ItemInfo(item_id, f"Title of {item_id}", 10.0, "", retired)


def bundle(bundle_id: str, *items: str) -> BundleInfo:
    return BundleInfo(bundle_id, bundle_id, items, None, None, False, 1, "catalog")


ITEMS = {
    i.item_id: i
    for i in [item("camera"), item("lens"), item("tripod"), item("bag"), item("boots"), item("old-strap", retired=True)]
}
BUNDLES = {"kit": bundle("kit", "lens", "tripod"), "hike": bundle("hike", "boots")}


class StoredItemVectors:
    """Item vectors as a backfill left them: the new camera is near the strap (retired since), the lens,
    the tripod and the bag, in that order, and far from the boots."""

    def __init__(self) -> None:
        directions = {"camera": 0.0, "old-strap": 0.05, "lens": 0.2, "tripod": 0.3, "bag": 0.4, "boots": 2.5}
        ids = sorted(directions)
        matrix = np.array([[np.cos(directions[i]), np.sin(directions[i])] for i in ids], dtype=np.float32)
        self.vectors = ItemVectors("item-fusion@test", dict(zip(ids, matrix, strict=True)), VectorIndex(ids, matrix))

    def similar_items(self, catalog_id: str, item_id: str, n: int) -> list[tuple[str, float]]:
        return self.vectors.similar(item_id, n) if catalog_id == CATALOG else []


class Fixed:
    def current(self, catalog_id: str) -> PolicyParams:
        return domain.DEFAULT_POLICY


def composed(recommender: Recommender, anchor: str) -> list[tuple[str, tuple[str, ...], str]]:
    answer = recommender.recommend(CATALOG, "shopper", 5, anchor_item_ids=[anchor], request_id="r")
    return [(r.bundle.name, r.bundle.item_ids, r.explanation) for r in answer.bundles if r.bundle.source == "generated"]


def test_a_new_item_without_co_purchases_is_completed_by_the_live_items_nearest_it() -> None:
    shop = InMemoryShop(BUNDLES, ITEMS, NOBODY)

    bundles = composed(Recommender(shop, Fixed(), item_vectors=StoredItemVectors()), "camera")

    assert bundles == [
        (
            GOES_WITH_IT,
            ("camera", "lens", "tripod", "bag"),  # the retired strap is passed over
            "Composed for you from items that go with it, by what shoppers bundle together",
        )
    ]
    assert len(bundles[0][1]) == GENERATED_BUNDLE_SIZE


def test_co_purchases_come_first_and_the_item_space_only_fills_what_they_leave() -> None:
    shop = InMemoryShop(BUNDLES, ITEMS, NOBODY, co_purchases={"camera": [("boots", 2.0)]})

    bundles = composed(Recommender(shop, Fixed(), item_vectors=StoredItemVectors()), "camera")

    assert [items for _, items, _ in bundles] == [("camera", "boots", "lens", "tripod")]


def test_an_item_with_enough_co_purchases_gets_them_alone_and_says_so() -> None:
    together = [("boots", 3.0), ("bag", 2.0), ("lens", 1.0)]
    shop = InMemoryShop(BUNDLES, ITEMS, NOBODY, co_purchases={"camera": together})

    bundles = composed(Recommender(shop, Fixed(), item_vectors=StoredItemVectors()), "camera")

    assert bundles == [
        (COMPLETE_THE_SET, ("camera", "boots", "bag", "lens"), "Composed for you from items often bought together")
    ]


def test_without_item_vectors_a_new_item_gets_no_composed_bundle_but_still_an_answer() -> None:
    shop = InMemoryShop(BUNDLES, ITEMS, NOBODY)
    recommender = Recommender(shop, Fixed())

    assert composed(recommender, "camera") == []
    assert recommender.recommend(CATALOG, "shopper", 5, anchor_item_ids=["camera"], request_id="r").bundles


def test_item_vectors_find_the_nearest_other_items_and_nothing_for_an_item_without_a_vector() -> None:
    vectors = StoredItemVectors().vectors

    assert [i for i, _ in vectors.similar("camera", 3)] == ["old-strap", "lens", "tripod"]
    assert vectors.similar("new-since-backfill", 3) == []
