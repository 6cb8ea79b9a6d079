"""The one reader of the online store (shared.store.feature_reads) on the real Redis, over a catalog
written by the real catalog writer and purchases applied by the real feature writer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from sqlalchemy import create_engine, text

from shared.events import EVENT_ADAPTER
from shared.store.catalog import CatalogBundle, CatalogItem, CatalogWriter
from shared.store.feature_reads import (
    BundleFeedback,
    BundleStats,
    FeatureReadBatch,
    StoredBundle,
    StoredItem,
    most_bought_bundles_by_category,
    popular_bundles,
)
from shared.store.feature_updates import DeliveredEvent, FeatureWriter
from shared.store.migrate import make_engine, upgrade_to_head
from shared.store.rebuild import drop_namespace_keys
from shared.store.redis_keys import CatalogKeys, NamespaceKeys
from tests.integration.servers import POSTGRES_URL, REDIS_URL

CATALOG = "shop"
ITEMS = [
    CatalogItem("tent", "Tent", ("Sports", "Outdoor"), price=80.0),
    CatalogItem("stove", "Stove", ("Sports", "Outdoor")),
    CatalogItem("mug", "Mug", ("Home", "Kitchen"), price=5.0, image_url="https://img/mug.jpg"),
]
BUNDLES = [
    CatalogBundle("camp", "Camping", ("tent", "stove"), price=85.0, discounted_price=79.0),
    CatalogBundle("brew", "Brewing", ("stove", "mug")),
    CatalogBundle("cook", "Cooking", ("mug",)),
    CatalogBundle("gone", "Retired", ("tent",), retired=True),
]
PURCHASES = {"brew": 3, "gone": 5, "camp": 1}
# bob was shown camp first and cook third, and clicked cook
BOBS_FEEDBACK = [
    {
        "type": "bundle_impression",
        "event_id": "show-bob-1",
        "catalog_id": CATALOG,
        "user_id": "bob",
        "event_time": "2014-07-22T10:00:00+00:00",
        "impression_id": "imp-bob-1",
        "bundles": [
            {"bundle_id": "camp", "position": 0, "propensity": 1},
            {"bundle_id": "cook", "position": 2, "propensity": 1},
        ],
    },
    {
        "type": "bundle_click",
        "event_id": "click-bob-1",
        "catalog_id": CATALOG,
        "user_id": "bob",
        "event_time": "2014-07-22T10:00:05+00:00",
        "bundle_id": "cook",
        "impression_id": "imp-bob-1",
    },
]


@pytest.fixture(scope="module")
def shop() -> Iterator[tuple[redis.Redis, CatalogKeys]]:
    namespace = f"reads_{uuid.uuid4().hex[:8]}"
    upgrade_to_head(POSTGRES_URL, namespace)
    engine = make_engine(POSTGRES_URL, namespace)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    writer = CatalogWriter(engine, client, namespace)
    writer.upsert_catalog(CATALOG, "Test shop", "tests/integration/test_feature_reads.py", "EUR")
    writer.upsert_items(CATALOG, ITEMS)
    writer.upsert_bundles(CATALOG, BUNDLES)
    events = [
        EVENT_ADAPTER.validate_python(
            {
                "type": "bundle_purchase",
                "event_id": f"buy-{bundle_id}-{n}",
                "catalog_id": CATALOG,
                "user_id": "ann",
                "bundle_id": bundle_id,
                "event_time": datetime(2014, 7, 22, tzinfo=UTC),
            }
        )
        for bundle_id, times in PURCHASES.items()
        for n in range(times)
    ]
    events += [EVENT_ADAPTER.validate_python(event) for event in BOBS_FEEDBACK]
    FeatureWriter(engine, client, namespace).apply(
        [DeliveredEvent("reads", 0, offset, event) for offset, event in enumerate(events)]
    )
    try:
        yield client, NamespaceKeys(namespace).catalog(CATALOG)
    finally:
        engine.dispose()
        with create_engine(POSTGRES_URL).begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE'))
        drop_namespace_keys(client, namespace)
        client.close()


def test_one_batch_reads_items_bundles_and_counts_as_the_writers_wrote_them(
    shop: tuple[redis.Redis, CatalogKeys],
) -> None:
    batch = FeatureReadBatch(*shop)
    items = batch.items(["mug", "unknown", "mug"])
    bundles = batch.bundles(["camp", "gone", "unknown"])
    purchases = batch.bundle_purchases(["brew", "cook"])
    stats = batch.bundle_stats(["brew", "cook"])
    version = batch.catalog_version()

    batch.run()

    assert items.value == {
        "mug": StoredItem("mug", "Mug", ("Home", "Kitchen"), "Kitchen", 5.0, "https://img/mug.jpg", retired=False)
    }
    assert bundles.value == {
        "camp": StoredBundle("camp", "Camping", ("tent", "stove"), 85.0, 79.0, retired=False, source="catalog"),
        "gone": StoredBundle("gone", "Retired", ("tent",), None, None, retired=True, source="catalog"),
    }
    assert purchases.value == {"brew": 3, "cook": 0}
    assert stats.value == {"brew": BundleStats(0, 0, 3), "cook": BundleStats(1, 1, 0)}
    assert version.value


def test_a_shoppers_looks_and_clicks_are_read_in_the_batch_beside_their_other_features(
    shop: tuple[redis.Redis, CatalogKeys],
) -> None:
    batch = FeatureReadBatch(*shop)
    bob = batch.bundle_feedback("bob")
    ann = batch.bundle_feedback("ann")
    bought = batch.purchased_bundles("ann")

    batch.run()

    assert bob.value == BundleFeedback(looks={"camp": 1.0, "cook": 1 / 3}, clicked=frozenset({"cook"}))
    assert ann.value == BundleFeedback(looks={}, clicked=frozenset())  # bought, never shown a list
    assert bought.value == {"brew", "gone", "camp"}


def test_the_indexes_hold_only_live_bundles_in_id_order(shop: tuple[redis.Redis, CatalogKeys]) -> None:
    batch = FeatureReadBatch(*shop)
    by_item = batch.bundles_of_items(["stove", "tent", "unknown"])
    by_category = batch.bundles_of_categories(["Outdoor", "Kitchen"])
    live = batch.live_bundles()

    batch.run()

    assert by_item.value == {"stove": ["brew", "camp"], "tent": ["camp"], "unknown": []}
    assert by_category.value == {"Outdoor": ["brew", "camp"], "Kitchen": ["brew", "cook"]}
    assert live.value == {"camp", "brew", "cook"}


def test_category_bundles_come_most_bought_first_then_by_id(shop: tuple[redis.Redis, CatalogKeys]) -> None:
    assert most_bought_bundles_by_category(*shop, ["Kitchen", "Outdoor", "Nothing"], 5) == {
        "Kitchen": ["brew", "cook"],
        "Outdoor": ["brew", "camp"],
        "Nothing": [],
    }
    assert most_bought_bundles_by_category(*shop, ["Outdoor"], 1) == {"Outdoor": ["brew"]}


def test_popular_bundles_skip_retired_ones_and_are_topped_up_in_id_order(
    shop: tuple[redis.Redis, CatalogKeys],
) -> None:
    assert popular_bundles(*shop, 5) == [("brew", 3.0), ("camp", 1.0), ("cook", 0.0)]
    assert popular_bundles(*shop, 1) == [("brew", 3.0)]
