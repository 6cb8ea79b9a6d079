"""What a hash of the catalog mirror means (the pure half of shared.store.feature_reads): the one
parser both the feature store and the ranker read items and bundles through."""

from __future__ import annotations

import pytest
import redis

from shared.store.feature_reads import (
    FeatureReadBatch,
    StoredBundle,
    StoredItem,
    bundle_from_hash,
    item_from_hash,
)
from shared.store.redis_keys import NamespaceKeys


def test_an_item_hash_gives_its_category_path_price_and_retired_flag() -> None:
    fields = {
        "title": "Tent",
        "category": "Sports > Outdoor > Camping",
        "affinity_category": "Outdoor",
        "price": "79.5",
        "image_url": "https://img/tent.jpg",
        "retired": "1",
    }

    assert item_from_hash("i1", fields) == StoredItem(
        item_id="i1",
        title="Tent",
        category_path=("Sports", "Outdoor", "Camping"),
        affinity_category="Outdoor",
        price=79.5,
        image_url="https://img/tent.jpg",
        retired=True,
    )


def test_an_item_hash_without_category_or_price_has_an_empty_path_and_no_price() -> None:
    item = item_from_hash("i2", {"title": "Mug", "category": "", "price": "", "retired": "0"})

    assert (item.category_path, item.affinity_category, item.price, item.image_url, item.retired) == (
        (),
        "",
        None,
        "",
        False,
    )


def test_a_bundle_hash_gives_its_items_in_order_and_both_prices() -> None:
    fields = {
        "name": "Camping set",
        "items": '["i3", "i1", "i2"]',
        "price": "120",
        "discounted_price": "99.9",
        "source": "generated",
        "retired": "0",
    }

    assert bundle_from_hash("b1", fields) == StoredBundle(
        bundle_id="b1",
        name="Camping set",
        item_ids=("i3", "i1", "i2"),
        price=120.0,
        discounted_price=99.9,
        retired=False,
        source="generated",
    )


@pytest.mark.parametrize("source", [None, ""], ids=["missing", "empty"])
def test_a_bundle_without_a_source_is_a_catalog_bundle(source: str | None) -> None:
    fields = {"name": "Set", "items": "[]"} | ({} if source is None else {"source": source})

    bundle = bundle_from_hash("b2", fields)

    assert (bundle.source, bundle.price, bundle.discounted_price, bundle.retired) == ("catalog", None, None, False)


def test_a_reply_cannot_be_read_before_its_batch_has_run() -> None:
    client = redis.Redis()  # never connects: nothing is sent before run
    batch = FeatureReadBatch(client, NamespaceKeys("live").catalog("amazon"))
    items = batch.items(["i1"])

    with pytest.raises(RuntimeError, match="has not run yet"):
        _ = items.value


def test_a_batch_of_reads_that_need_no_command_runs_without_redis() -> None:
    client = redis.Redis(port=1)  # nothing listens there: a round trip would fail
    batch = FeatureReadBatch(client, NamespaceKeys("live").catalog("amazon"))
    purchases, live = batch.bundle_purchases([]), batch.live_among([])

    batch.run()

    assert (purchases.value, live.value) == ({}, {})
