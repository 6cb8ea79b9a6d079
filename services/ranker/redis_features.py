"""FeatureSource over the online store itself: the feature store's Redis layout, read in process.

The serving path cannot afford a gRPC hop per feature group (seven per request, each with its own
Redis pipeline and two protobuf encodings): see docs/adr/0003-ranker-reads-online-features.md.
Per request this source makes at most three Redis round trips (the shopper's features with the
catalog version; the neighbours of their items; the purchases of the shortlist and any item outside
the catalog copy) and answers the rest from :class:`CatalogSnapshots`. Redis is read through
:mod:`shared.store.feature_reads` (keys from ``shared.store.redis_keys``), as the feature store
service reads it to serve the same reads over gRPC to everyone else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import redis

from services.ranker.catalog_snapshot import CatalogSnapshot, CatalogSnapshots, bundle_info, item_info
from services.ranker.domain import RECENT_ITEMS, BundleInfo, ItemInfo, UserSignals
from services.ranker.ports import LiveBundles
from services.ranker.vector_index import BundleVectors
from shared.errors import NotFound, Unavailable
from shared.store import feature_reads
from shared.store.feature_reads import FeatureReadBatch
from shared.store.redis_keys import USER_RECENT_ITEMS_CAP, NamespaceKeys

log = logging.getLogger(__name__)

NEIGHBOURS = 20
TOP_CATEGORIES = 3
CATEGORY_CANDIDATES = 30


class RedisFeatureSource:
    """Reads for one namespace; ``client`` must decode responses."""

    def __init__(self, client: redis.Redis, namespace: str, snapshot_max_age_s: float = 60.0) -> None:
        self._client = client
        self._keys = NamespaceKeys(namespace)
        self._snapshots = CatalogSnapshots(client, self._keys.catalog, snapshot_max_age_s)
        # The copy this thread's request settled on in user_signals, and whether it is current: a
        # request is served by one thread (the gRPC server's pool), so requests never mix copies.
        self._request = threading.local()

    def warm_up(self) -> list[str]:
        """Loads every catalog of the namespace not loaded yet (call before serving, then now and
        then: a catalog synced later is copied before its first request); returns the new ids."""
        listed: set[str] = self._client.smembers(self._keys.catalogs())  # type: ignore[assignment]
        new = sorted(catalog_id for catalog_id in listed if not self._snapshots.holds(catalog_id))
        for catalog_id in new:
            version_key = self._keys.catalog(catalog_id).catalog_version()
            self._snapshots.load(catalog_id, self._client.get(version_key))  # type: ignore[arg-type]
        return new

    def watch_for_new_catalogs(self, every_s: float, on_new: Callable[[list[str]], None]) -> None:
        """Runs :meth:`warm_up` every ``every_s`` in a daemon thread; ``on_new`` hears of new catalogs."""

        def watch() -> None:
            while True:
                time.sleep(every_s)
                try:
                    new = self.warm_up()
                except redis.RedisError as exc:
                    log.warning("looking for new catalogs failed (%s); trying again in %.0fs", exc, every_s)
                    continue
                if new:
                    on_new(new)

        threading.Thread(target=watch, name="catalog-watch", daemon=True).start()

    def settle_catalog(self, catalog_id: str) -> None:
        batch = self._batch(catalog_id)
        version = batch.catalog_version()
        self._run(batch)
        self._settle(catalog_id, version.value)

    def user_signals(self, catalog_id: str, user_id: str) -> UserSignals:
        batch = self._batch(catalog_id)
        history = batch.recent_items(user_id, USER_RECENT_ITEMS_CAP)
        categories = batch.category_affinity(user_id, TOP_CATEGORIES)
        bought = batch.purchased_bundles(user_id)
        feedback = batch.bundle_feedback(user_id)
        version = batch.catalog_version()
        self._run(batch)
        self._settle(catalog_id, version.value)
        return UserSignals(
            recent_item_ids=tuple(history.value[:RECENT_ITEMS]),
            purchased_bundle_ids=frozenset(bought.value),
            top_categories=tuple(category for category, _ in categories.value),
            bundle_looks=feedback.value.looks,
            clicked_bundle_ids=feedback.value.clicked,
            history_item_ids=tuple(history.value),
        )

    def neighbours(self, catalog_id: str, item_ids: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
        if not item_ids:
            return {}
        batch = self._batch(catalog_id)
        neighbours = batch.neighbours(item_ids, NEIGHBOURS)
        self._run(batch)
        return neighbours.value

    # While a reload is under way (the copy is stale), the indexes too are read from Redis: a copy
    # taken while a catalog was still being synced may lack most of it.

    def bundles_by_item(self, catalog_id: str, item_ids: Sequence[str]) -> dict[str, list[str]]:
        snapshot, current = self._catalog(catalog_id)
        if current:
            return {item_id: list(snapshot.bundles_by_item.get(item_id, ())) for item_id in item_ids}
        batch = self._batch(catalog_id)
        bundles = batch.bundles_of_items(item_ids)
        self._run(batch)
        return bundles.value

    def bundles_by_category(self, catalog_id: str, categories: Sequence[str]) -> dict[str, list[str]]:
        snapshot, current = self._catalog(catalog_id)
        if current:
            index = snapshot.bundles_by_category
            return {category: list(index.get(category, ())[:CATEGORY_CANDIDATES]) for category in categories}
        with _unavailable_on_redis_error():
            return feature_reads.most_bought_bundles_by_category(
                self._client, self._keys.catalog(catalog_id), categories, CATEGORY_CANDIDATES
            )

    def bundles(self, catalog_id: str, bundle_ids: Sequence[str]) -> dict[str, BundleInfo]:
        snapshot, current = self._catalog(catalog_id)
        batch = self._batch(catalog_id)
        if not current:  # a reload is under way: the bundles themselves come from Redis
            stored, purchases = batch.bundles(bundle_ids), batch.bundle_purchases(bundle_ids)
            self._run(batch)
            return {b: bundle_info(bundle, purchases.value[b]) for b, bundle in stored.value.items()}
        known = [b for b in dict.fromkeys(bundle_ids) if b in snapshot.bundles]
        if not known:
            return {}
        purchases = batch.bundle_purchases(known)
        self._run(batch)
        return {b: snapshot.bundles[b].with_purchases(purchases.value[b]) for b in known}

    def items(self, catalog_id: str, item_ids: Sequence[str]) -> dict[str, ItemInfo]:
        snapshot, current = self._catalog(catalog_id)
        found = {i: snapshot.items[i] for i in item_ids if i in snapshot.items} if current else {}
        missing = [i for i in dict.fromkeys(item_ids) if i not in found]
        if missing:  # items in no live bundle: a generated bundle's members
            batch = self._batch(catalog_id)
            stored = batch.items(missing)
            self._run(batch)
            found.update({item_id: item_info(item) for item_id, item in stored.value.items()})
        return found

    def popular_bundles(self, catalog_id: str, k: int) -> list[str]:
        snapshot, current = self._catalog(catalog_id)
        popular = list(snapshot.popular[:k]) if current else self._popular_from_redis(catalog_id, k)
        if not popular:
            raise NotFound(f"catalog {catalog_id!r} has no live bundles; sync its catalog first")
        return popular

    def _popular_from_redis(self, catalog_id: str, k: int) -> list[str]:
        """As the feature store's GetPopularBundles: live bundles by purchases, topped up in id order."""
        with _unavailable_on_redis_error():
            return [b for b, _ in feature_reads.popular_bundles(self._client, self._keys.catalog(catalog_id), k)]

    def live_bundles(self, catalog_id: str) -> LiveBundles:
        """The live bundles of the copy this request settled on (see :class:`LiveBundleSource`)."""
        snapshot = self._catalog(catalog_id)[0]
        return LiveBundles((catalog_id, snapshot.version, snapshot.loaded_at), snapshot.bundles)

    def bundle_vectors(self, catalog_id: str) -> BundleVectors | None:
        """The search index of the copy this request settled on; None before the catalog's first backfill.

        A copy being reloaded may still hold a bundle retired since: callers read the bundles they
        answer with through :meth:`bundles`, which reads Redis itself while the copy is stale.
        """
        return self._catalog(catalog_id)[0].vectors

    def similar_items(self, catalog_id: str, item_id: str, n: int) -> list[tuple[str, float]]:
        """Nearest items by the copy's item vectors (see :class:`ItemVectorSource`)."""
        item_vectors = self._catalog(catalog_id)[0].item_vectors
        return item_vectors.similar(item_id, n) if item_vectors is not None else []

    def _catalog(self, catalog_id: str) -> tuple[CatalogSnapshot, bool]:
        """The copy this request settled on, and whether it is current."""
        settled: dict[str, tuple[CatalogSnapshot, bool]] = getattr(self._request, "catalogs", {})
        if catalog_id not in settled:  # a caller that skipped user_signals and settle_catalog
            self.settle_catalog(catalog_id)
            settled = self._request.catalogs
        return settled[catalog_id]

    def _settle(self, catalog_id: str, version: str | None) -> None:
        try:
            copy = self._snapshots.current(catalog_id, version)
        except redis.RedisError as exc:
            raise Unavailable(f"redis: cannot load catalog {catalog_id!r} ({type(exc).__name__}: {exc})") from None
        if not hasattr(self._request, "catalogs"):
            self._request.catalogs = {}
        self._request.catalogs[catalog_id] = copy

    def _batch(self, catalog_id: str) -> FeatureReadBatch:
        return FeatureReadBatch(self._client, self._keys.catalog(catalog_id))

    @staticmethod
    def _run(batch: FeatureReadBatch) -> None:
        with _unavailable_on_redis_error():
            batch.run()


@contextmanager
def _unavailable_on_redis_error() -> Iterator[None]:
    try:
        yield
    except redis.RedisError as exc:
        raise Unavailable(f"redis: {type(exc).__name__}: {exc}") from None
