"""The ranker's in-memory copy of a catalog's live bundles and their items.

A catalog changes when the store syncs it, while the ranker reads it on every request: copying it
into memory takes the per-request work from hundreds of Redis commands (and two protobuf encodings)
to dictionary lookups. The copy is current by construction: every write to the catalog mirror sets
a fresh version token (:meth:`shared.store.redis_keys.CatalogKeys.catalog_version`), the ranker
reads the token in the same Redis round trip as the shopper's features, and a request that sees a
token other than its copy's starts a reload in the background and, until it lands, reads the
bundles and items it answers with from Redis itself. A retired item therefore never appears once
its retirement was written. Purchases (the popularity order) move with every order, so they are
read per request for the shortlist; the order of the category and popularity lists is the one at
load time, refreshed in the background when the copy is older than ``max_age_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import redis

from services.ranker.domain import BundleInfo, ItemInfo
from services.ranker.vector_index import BundleVectors, ItemVectors, load_bundle_vectors, load_item_vectors
from shared.store.feature_reads import FeatureReadBatch, StoredBundle, StoredItem
from shared.store.redis_keys import CatalogKeys

log = logging.getLogger(__name__)

CHUNK = 1000


@dataclass(frozen=True)
class CatalogSnapshot:
    """Live bundles of one catalog with their items and the indexes the ranker looks them up by."""

    version: str | None
    bundles: Mapping[str, BundleInfo]
    items: Mapping[str, ItemInfo]
    bundles_by_item: Mapping[str, tuple[str, ...]]
    bundles_by_category: Mapping[str, tuple[str, ...]]
    popular: tuple[str, ...]
    loaded_at: float = field(default_factory=time.monotonic)
    vectors: BundleVectors | None = None
    """The live bundles' vectors and their search index; None before any backfill (see vector_index)."""
    item_vectors: ItemVectors | None = None
    """The items' fused vectors and their index; None before any backfill of item vectors."""


def item_info(item: StoredItem) -> ItemInfo:
    """The ranker's view of an item of the catalog mirror."""
    return ItemInfo(
        item_id=item.item_id,
        title=item.title,
        price=item.price,
        image_url=item.image_url,
        retired=item.retired,
        category_path=item.category_path,
    )


def bundle_info(bundle: StoredBundle, purchases: int) -> BundleInfo:
    """The ranker's view of a bundle of the catalog mirror, bought ``purchases`` times."""
    return BundleInfo(
        bundle_id=bundle.bundle_id,
        name=bundle.name,
        item_ids=bundle.item_ids,
        price=bundle.price,
        discounted_price=bundle.discounted_price,
        retired=bundle.retired,
        purchases=purchases,
        source=bundle.source,
    )


def load_snapshot(
    client: redis.Redis, keys: CatalogKeys, version: str | None, same_version: CatalogSnapshot | None = None
) -> CatalogSnapshot:
    """Reads the catalog's live bundles, their items and the purchase counts (``client`` decodes).

    ``version`` is the token read before loading: a write during the load sets a new token, which the
    next request sees, so the copy is never taken for newer than it is. ``same_version``: a copy at
    this same version, whose bundle and item vectors are kept instead of read again (every write to
    the live bundles or their vectors renews the token, so they cannot have changed).
    """
    batch = FeatureReadBatch(client, keys)
    live_reply, purchases_reply = batch.live_bundles(), batch.all_bundle_purchases()
    batch.run()
    live, purchases = sorted(live_reply.value), purchases_reply.value
    bundles: dict[str, BundleInfo] = {}
    for start in range(0, len(live), CHUNK):
        stored_bundles = batch.bundles(live[start : start + CHUNK])
        batch.run()
        for bundle_id, stored in stored_bundles.value.items():
            if not stored.retired:
                bundles[bundle_id] = bundle_info(stored, purchases.get(bundle_id, 0))
    item_ids = sorted({i for b in bundles.values() for i in b.item_ids})
    items: dict[str, ItemInfo] = {}
    categories: dict[str, str] = {}
    for start in range(0, len(item_ids), CHUNK):
        stored_items = batch.items(item_ids[start : start + CHUNK])
        batch.run()
        for item_id, item in stored_items.value.items():
            items[item_id] = item_info(item)
            categories[item_id] = item.affinity_category
    by_item: defaultdict[str, list[str]] = defaultdict(list)
    by_category: defaultdict[str, set[str]] = defaultdict(set)
    for bundle in bundles.values():
        for item_id in bundle.item_ids:
            by_item[item_id].append(bundle.bundle_id)
            if categories.get(item_id):
                by_category[categories[item_id]].add(bundle.bundle_id)

    def most_bought(bundle_ids: set[str] | list[str]) -> tuple[str, ...]:
        return tuple(sorted(bundle_ids, key=lambda b: (-bundles[b].purchases, b)))

    # As the feature store's GetPopularBundles orders them: bought ones as ZREVRANGE does (ties in
    # reverse id order), then the never bought in id order.
    bought = sorted((b for b in bundles if bundles[b].purchases), key=lambda b: (bundles[b].purchases, b), reverse=True)
    never_bought = sorted(b for b in bundles if not bundles[b].purchases)

    return CatalogSnapshot(
        version=version,
        bundles=bundles,
        items=items,
        bundles_by_item={item_id: tuple(sorted(ids)) for item_id, ids in by_item.items()},
        bundles_by_category={category: most_bought(ids) for category, ids in by_category.items()},
        popular=(*bought, *never_bought),
        vectors=same_version.vectors if same_version is not None else load_bundle_vectors(client, keys, list(bundles)),
        item_vectors=same_version.item_vectors if same_version is not None else load_item_vectors(client, keys),
    )


class CatalogSnapshots:
    """The copy of each catalog, reloaded in the background when its version changes or it grows old.

    A request never waits for a reload (a large catalog takes longer than a request's deadline):
    :meth:`current` says whether the copy it returns is current, and a caller given a stale copy
    reads what must be exact (retired flags, bundle members) from Redis itself until the reload lands.
    """

    def __init__(self, client: redis.Redis, keys_of: Callable[[str], CatalogKeys], max_age_s: float) -> None:
        self._client = client
        self._keys_of = keys_of
        self._max_age_s = max_age_s
        self._snapshots: dict[str, CatalogSnapshot] = {}
        self._lock = threading.Lock()
        self._refreshing: set[str] = set()

    def current(self, catalog_id: str, version: str | None) -> tuple[CatalogSnapshot, bool]:
        """The copy of ``catalog_id`` and whether it is at ``version`` (just read from Redis).

        A catalog seen for the first time is loaded before answering (warm rankers up with
        :meth:`load` to spare the first request that wait).
        """
        snapshot = self._snapshots.get(catalog_id)
        if snapshot is None:
            with self._lock:
                snapshot = self._snapshots.get(catalog_id) or self._load(catalog_id, version)
        if snapshot.version != version:
            self._refresh_in_background(catalog_id, version)
            return snapshot, False
        if time.monotonic() - snapshot.loaded_at > self._max_age_s:
            self._refresh_in_background(catalog_id, version)
        return snapshot, True

    def holds(self, catalog_id: str) -> bool:
        return catalog_id in self._snapshots

    def load(self, catalog_id: str, version: str | None) -> CatalogSnapshot:
        """Loads ``catalog_id`` now (at start-up, before serving)."""
        with self._lock:
            return self._load(catalog_id, version)

    def _load(self, catalog_id: str, version: str | None) -> CatalogSnapshot:
        started = time.perf_counter()
        snapshot = load_snapshot(self._client, self._keys_of(catalog_id), version)
        self._snapshots[catalog_id] = snapshot
        log.info(
            "catalog %s loaded: %d live bundles, %d items in %.0f ms (version %s); %s",
            catalog_id,
            len(snapshot.bundles),
            len(snapshot.items),
            (time.perf_counter() - started) * 1000,
            version,
            _describe_vectors(snapshot),
        )
        return snapshot

    def _refresh_in_background(self, catalog_id: str, version: str | None) -> None:
        """Reloads a copy without holding up any request; one reload per catalog at a time."""
        with self._lock:
            if catalog_id in self._refreshing:
                return
            self._refreshing.add(catalog_id)

        def refresh() -> None:
            try:
                held = self._snapshots.get(catalog_id)
                # An age refresh (same version) re-reads the popularity order, not the vectors.
                same = held if held is not None and version is not None and held.version == version else None
                snapshot = load_snapshot(self._client, self._keys_of(catalog_id), version, same)
                with self._lock:
                    self._snapshots[catalog_id] = snapshot
                log.info("catalog %s reloaded at version %s; %s", catalog_id, version, _describe_vectors(snapshot))
            except redis.RedisError as exc:
                log.warning("reloading catalog %s failed (%s); keeping the loaded copy", catalog_id, exc)
            finally:
                with self._lock:
                    self._refreshing.discard(catalog_id)

        threading.Thread(target=refresh, name=f"catalog-refresh-{catalog_id}", daemon=True).start()


def _describe_vectors(snapshot: CatalogSnapshot) -> str:
    vectors, items = snapshot.vectors, snapshot.item_vectors
    described = (
        "no bundle vectors (typed search needs `bundlewise backfill-vectors`)"
        if vectors is None
        else f"{len(vectors.index)} bundle vectors of {vectors.model_version}, "
        f"{vectors.without_vector} live bundles without one (synced since the last backfill)"
    )
    if items is None:
        return described + "; no item vectors (composing around a new item needs `bundlewise backfill-vectors`)"
    return described + f"; {len(items.index)} item vectors of {items.model_version}"
