"""Feature reads on the real Redis, with the feature store service running: the ranker's two ways of
reading agree, its in-memory catalog copy never serves a catalog older than the last write, and
time windows run on event time with a settable clock."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from bundlewise.featurestore.v1 import featurestore_pb2 as pb
from bundlewise.featurestore.v1 import featurestore_pb2_grpc
from sqlalchemy import create_engine, text

from scripts.local_stack import LocalStack
from services.ranker.domain import UserSignals
from services.ranker.featurestore_client import GrpcFeatureSource
from services.ranker.redis_features import RedisFeatureSource
from shared.events import EVENT_ADAPTER
from shared.grpc_client import open_channel
from shared.store.catalog import CatalogBundle, CatalogItem, CatalogWriter
from shared.store.feature_updates import INTERACTION_WEIGHTS, DeliveredEvent, FeatureWriter
from shared.store.migrate import make_engine, upgrade_to_head
from shared.store.rebuild import drop_namespace_keys
from tests.integration.isolated_pipeline import CATALOG, ITEMS, load_small_catalog, shopper_events
from tests.integration.servers import POSTGRES_URL, REDIS_URL
from tests.integration.waiting import wait_for

SHOPPERS = ("ann", "ben", "cy")
LATER_SHOPPERS = ("dee", "eli")  # three days later
FEEDBACK_SHOPPER = "fay"  # only shown bundles and clicked one
CLOCK = "2014-07-25"  # the feature store's clock: as if it were that day


class Sources:
    def __init__(
        self,
        namespace: str,
        grpc_source: GrpcFeatureSource,
        writer: CatalogWriter,
        stub: featurestore_pb2_grpc.FeatureStoreStub,
        events: list[dict[str, Any]],
    ) -> None:
        self.namespace = namespace
        self.grpc = grpc_source
        self.writer = writer
        self.stub = stub
        self.events = events

    def redis_source(self) -> RedisFeatureSource:
        return RedisFeatureSource(redis.Redis.from_url(REDIS_URL, decode_responses=True), self.namespace)


def feedback_events(user: str) -> list[dict[str, Any]]:
    """Two lists showing ``user`` b1 and b2 (b1 at positions 0 then 1, b2 at 1 then 3), then a click on b2."""
    base = {"catalog_id": CATALOG, "user_id": user, "event_time": "2014-07-22T12:00:00+00:00"}
    return [
        base
        | {
            "type": "bundle_impression",
            "event_id": f"feedback-{user}-{n}",
            "impression_id": f"imp-f-{user}-{n}",
            "bundles": [{"bundle_id": b, "position": p, "propensity": 0.5} for b, p in shown],
        }
        for n, shown in enumerate([[("b1", 0), ("b2", 1)], [("b2", 3), ("b1", 1)]])
    ] + [base | {"type": "bundle_click", "event_id": f"feedback-{user}-click", "bundle_id": "b2"}]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sources]:
    namespace = f"reads_{uuid.uuid4().hex[:8]}"
    upgrade_to_head(POSTGRES_URL, namespace)
    engine = make_engine(POSTGRES_URL, namespace)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    load_small_catalog(engine, client, namespace)
    events = shopper_events("r", SHOPPERS, 30, datetime(2014, 7, 22, tzinfo=UTC), seed=11)
    events += shopper_events("s", LATER_SHOPPERS, 20, datetime(2014, 7, 25, tzinfo=UTC), seed=12)
    events += feedback_events(FEEDBACK_SHOPPER)
    FeatureWriter(engine, client, namespace).apply(
        [DeliveredEvent("reads", 0, n, EVENT_ADAPTER.validate_python(e)) for n, e in enumerate(events)]
    )
    stack = LocalStack.with_free_ports(
        {
            "BUNDLEWISE_POSTGRES_URL": POSTGRES_URL,
            "BUNDLEWISE_REDIS_URL": REDIS_URL,
            "BUNDLEWISE_NAMESPACE": namespace,
            "BUNDLEWISE_FEATURE_CLOCK": CLOCK,
        },
        Path(tmp_path_factory.mktemp("reads-logs")),
    )
    try:
        stack.start(("featurestore",))
        channel = open_channel(stack.address("featurestore"))
        yield Sources(
            namespace,
            GrpcFeatureSource(channel, 5.0),
            CatalogWriter(engine, client, namespace),
            featurestore_pb2_grpc.FeatureStoreStub(channel),
            events,
        )
        channel.close()
    finally:
        stack.stop()
        engine.dispose()
        with create_engine(POSTGRES_URL).begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE'))
        drop_namespace_keys(client, namespace)
        client.close()


def test_reading_redis_in_process_answers_as_the_feature_store_service_does(sources: Sources) -> None:
    local = sources.redis_source()
    for user in SHOPPERS:
        assert local.user_signals(CATALOG, user) == sources.grpc.user_signals(CATALOG, user)
    assert any(local.user_signals(CATALOG, user).bundle_looks for user in SHOPPERS)
    assert local.neighbours(CATALOG, ITEMS) == sources.grpc.neighbours(CATALOG, ITEMS)
    assert local.bundles_by_item(CATALOG, ITEMS) == sources.grpc.bundles_by_item(CATALOG, ITEMS)
    categories = ["Outdoor", "Kitchen", "Nothing"]
    assert local.bundles_by_category(CATALOG, categories) == sources.grpc.bundles_by_category(CATALOG, categories)
    live = ["b1", "b2"]
    assert local.bundles(CATALOG, live) == sources.grpc.bundles(CATALOG, live)
    assert local.items(CATALOG, [*ITEMS, "unknown"]) == sources.grpc.items(CATALOG, [*ITEMS, "unknown"])
    assert local.popular_bundles(CATALOG, 5) == sources.grpc.popular_bundles(CATALOG, 5)


def test_a_shoppers_looks_at_and_clicks_on_bundles_reach_the_ranker_by_either_path(sources: Sources) -> None:
    expected = UserSignals(
        recent_item_ids=(),
        purchased_bundle_ids=frozenset(),
        top_categories=(),
        bundle_looks={"b1": 1.5, "b2": 0.75},  # 1/(1+0) + 1/(1+1) and 1/(1+1) + 1/(1+3)
        clicked_bundle_ids=frozenset({"b2"}),
    )

    assert sources.redis_source().user_signals(CATALOG, FEEDBACK_SHOPPER) == expected
    assert sources.grpc.user_signals(CATALOG, FEEDBACK_SHOPPER) == expected
    reply = sources.stub.GetUserFeatures(
        pb.GetUserFeaturesRequest(catalog_id=CATALOG, user_ids=[FEEDBACK_SHOPPER, "nobody"]), timeout=5
    )
    fay, nobody = reply.users
    assert (fay.found, dict(fay.bundle_looks), list(fay.clicked_bundle_ids)) == (True, {"b1": 1.5, "b2": 0.75}, ["b2"])
    assert (nobody.found, dict(nobody.bundle_looks), list(nobody.clicked_bundle_ids)) == (False, {}, [])


def test_a_catalog_write_reaches_the_next_request_of_a_ranker_that_holds_a_copy(sources: Sources) -> None:
    local = sources.redis_source()
    local.user_signals(CATALOG, "ann")  # the copy is loaded
    assert "b9" not in local.bundles_by_item(CATALOG, ["i10"])["i10"]

    sources.writer.upsert_bundles(CATALOG, [CatalogBundle("b9", "Bundle b9", ("i10", "i11"))])
    sources.writer.retire_items(CATALOG, ["i11"])
    local.user_signals(CATALOG, "ann")  # the next request: its copy is stale, so it reads what it serves

    assert local.items(CATALOG, ["i11"])["i11"].retired
    assert local.bundles(CATALOG, ["b9"])["b9"].item_ids == ("i10", "i11")

    def index_after_a_request() -> list[str]:
        local.user_signals(CATALOG, "ann")
        return local.bundles_by_item(CATALOG, ["i10"])["i10"]

    wait_for(index_after_a_request, lambda bundle_ids: "b9" in bundle_ids, 10, "the copy reloaded in the background")
    assert local.items(CATALOG, ["i11"])["i11"].retired
    sources.writer.upsert_items(CATALOG, [CatalogItem("i11", "Item i11, back", ("Kitchen", "Knives"), price=5.0)])
    local.user_signals(CATALOG, "ann")
    assert not local.items(CATALOG, ["i11"])["i11"].retired


def interactions(events: list[dict[str, Any]], days: set[str]) -> dict[str, float]:
    """What the window should hold: each item event's weight, on its event day."""
    counts: Counter[str] = Counter()
    for event in events:
        if event["type"] in INTERACTION_WEIGHTS and event["event_time"][:10] in days:
            counts[event["item_id"]] += INTERACTION_WEIGHTS[event["type"]]
    return dict(counts)


def popular(sources: Sources, days: int, as_of_day: str = "") -> tuple[dict[str, float], str, str]:
    reply = sources.stub.GetPopularItems(
        pb.GetPopularItemsRequest(catalog_id=CATALOG, k=100, days=days, as_of_day=as_of_day), timeout=5
    )
    return {i.id: i.score for i in reply.items}, reply.first_day, reply.last_day


def test_trending_items_count_the_interactions_of_the_window_by_event_time(sources: Sources) -> None:
    assert popular(sources, 1, "2014-07-22") == (
        interactions(sources.events, {"2014-07-22"}),
        "2014-07-22",
        "2014-07-22",
    )
    both = interactions(sources.events, {"2014-07-22", "2014-07-25"})
    assert popular(sources, 4, "2014-07-25") == (both, "2014-07-22", "2014-07-25")
    assert popular(sources, 2, "2014-07-24")[0] == {}


def test_without_a_day_the_window_ends_on_the_feature_stores_clock(sources: Sources) -> None:
    assert popular(sources, 1) == (interactions(sources.events, {CLOCK}), CLOCK, CLOCK)


def test_a_copy_taken_while_a_catalog_was_being_synced_never_hides_the_rest_of_it(sources: Sources) -> None:
    local = sources.redis_source()
    sources.writer.upsert_catalog("later", "A catalog synced in two steps", "test", "EUR")
    sources.writer.upsert_items("later", [CatalogItem("l1", "Lantern", ("Outdoor", "Lights"), price=9.0)])
    assert "later" in local.warm_up()  # copied with its items but no bundle yet

    sources.writer.upsert_bundles("later", [CatalogBundle("lb1", "Night kit", ("l1",))])
    local.user_signals("later", "ann")  # the next request: a reload has begun in the background

    assert local.popular_bundles("later", 5) == ["lb1"]
    assert local.bundles_by_item("later", ["l1"]) == {"l1": ["lb1"]}
    assert local.bundles("later", ["lb1"])["lb1"].item_ids == ("l1",)
