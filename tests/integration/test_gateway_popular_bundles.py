"""The popular-bundles fallback's reads of the real Redis: order, segment, constraints, retirement."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import create_engine, text

from services.gateway.domain import NO_CONSTRAINTS, BundleConstraints, Recommendation
from services.gateway.popular_bundles import RedisPopularBundles
from shared.store.catalog import CatalogBundle, CatalogItem, CatalogWriter
from shared.store.migrate import make_engine, upgrade_to_head
from shared.store.rebuild import drop_namespace_keys
from shared.store.redis_keys import NamespaceKeys
from tests.integration.servers import POSTGRES_URL, REDIS_URL

CATALOG = "kitchen"
ITEMS = {
    "pan": ("Pan", 30.0, ("Kitchen", "Cookware")),
    "pot": ("Pot", 40.0, ("Kitchen", "Cookware")),
    "beans": ("Coffee beans", 12.0, ("Kitchen", "Coffee")),
    "grinder": ("Grinder", 60.0, ("Kitchen", "Coffee")),
    "knife": ("Knife", 25.0, ("Kitchen", "Knives")),
    "board": ("Board", 15.0, ("Kitchen", "Knives")),
}
BUNDLES = {"cook": ("pan", "pot"), "coffee": ("beans", "grinder"), "cut": ("knife", "board")}
PURCHASES = {"cook": 5, "cut": 3, "coffee": 1}


@pytest.fixture
def namespace() -> Iterator[str]:
    """A namespace of each test's own holding the kitchen catalog and its bundles' purchase counts."""
    name = f"gwpop_{uuid.uuid4().hex[:8]}"
    upgrade_to_head(POSTGRES_URL, name)
    engine = make_engine(POSTGRES_URL, name, pool_size=1)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    writer = CatalogWriter(engine, client, name)
    writer.upsert_catalog(CATALOG, "Kitchen", "tests", "EUR")
    writer.upsert_items(CATALOG, [CatalogItem(i, t, c, p) for i, (t, p, c) in ITEMS.items()])
    writer.upsert_bundles(CATALOG, [CatalogBundle(b, b.title(), members) for b, members in BUNDLES.items()])
    keys = NamespaceKeys(name).catalog(CATALOG)
    client.zadd(keys.bundle_popularity(), PURCHASES)
    client.zadd(keys.user_categories("coffee-lover"), {"Coffee": 4.0, "Knives": 1.0})
    try:
        yield name
    finally:
        engine.dispose()
        with create_engine(POSTGRES_URL).begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        drop_namespace_keys(client, name)
        client.close()


def popular(
    namespace: str,
    user_id: str,
    constraints: BundleConstraints = NO_CONSTRAINTS,
    catalog_id: str = CATALOG,
    redis_url: str = REDIS_URL,
) -> Recommendation | None:
    async def ask() -> Recommendation | None:
        source = RedisPopularBundles(redis_url, namespace, refresh_s=60, timeout_s=0.5)
        try:
            return await source.recommend(catalog_id=catalog_id, user_id=user_id, k=3, constraints=constraints)
        finally:
            await source.close()

    return asyncio.run(ask())


def bundle_ids(answer: Recommendation | None) -> list[str]:
    assert answer is not None
    return [bundle.bundle_id for bundle in answer.bundles]


def test_a_shopper_without_history_gets_the_most_bought_bundles_with_their_items(namespace: str) -> None:
    answer = popular(namespace, "stranger")

    assert bundle_ids(answer) == ["cook", "cut", "coffee"]
    assert answer is not None
    first = answer.bundles[0]
    assert [(i.item_id, i.title, i.price) for i in first.items] == [("pan", "Pan", 30.0), ("pot", "Pot", 40.0)]
    assert (first.total_price, first.explanation, answer.cold_start) == (70.0, "Popular in this shop", True)


def test_the_shoppers_favourite_category_comes_first(namespace: str) -> None:
    answer = popular(namespace, "coffee-lover")

    assert bundle_ids(answer) == ["coffee", "cook", "cut"]
    assert answer is not None
    assert answer.bundles[0].explanation == "Popular in Coffee"


def test_price_and_size_constraints_hold(namespace: str) -> None:
    assert bundle_ids(popular(namespace, "stranger", BundleConstraints(max_total_price=45.0))) == ["cut"]
    assert bundle_ids(popular(namespace, "stranger", BundleConstraints(min_items=3))) == []


def test_an_unknown_catalog_or_an_unreachable_redis_gives_no_answer(namespace: str) -> None:
    assert popular(namespace, "stranger", catalog_id="no-such-catalog") is None
    assert popular(namespace, "stranger", redis_url="redis://127.0.0.1:1/0") is None


def test_a_bundle_retired_or_holding_a_retired_item_is_left_out_of_a_list_read_before(namespace: str) -> None:
    async def before_and_after() -> tuple[list[str], list[str]]:
        source = RedisPopularBundles(REDIS_URL, namespace, refresh_s=3600)
        try:
            before = await source.recommend(catalog_id=CATALOG, user_id="stranger", k=3)
            engine = make_engine(POSTGRES_URL, namespace, pool_size=1)
            client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
            writer = CatalogWriter(engine, client, namespace)
            writer.retire_items(CATALOG, ["board"])
            writer.upsert_bundles(CATALOG, [CatalogBundle("coffee", "Coffee", BUNDLES["coffee"], retired=True)])
            engine.dispose()
            client.close()
            after = await source.recommend(catalog_id=CATALOG, user_id="stranger", k=3)
        finally:
            await source.close()
        return bundle_ids(before), bundle_ids(after)

    before, after = asyncio.run(before_and_after())

    assert before == ["cook", "cut", "coffee"]
    assert after == ["cook"]
