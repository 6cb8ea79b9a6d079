"""Reads of the online features in Redis, and what each reply means.

Both services that serve online features read through here: the feature store service
(:mod:`services.featurestore.reads`, which answers in its wire messages) and the ranker
(:mod:`services.ranker.redis_features` and its catalog copy, which answer in the ranker's domain
types). Keys come from :mod:`shared.store.redis_keys`; the catalog mirror's hashes are parsed into
:class:`StoredItem` and :class:`StoredBundle`, as :mod:`shared.store.catalog` writes them.

Reads are queued on a :class:`FeatureReadBatch` (one Redis pipeline), so a caller chooses which reads
share a round trip; each queued read returns a :class:`Reply` holding its parsed answer once the
batch has run. Reads that need the answer of an earlier one (:func:`most_bought_bundles_by_category`,
:func:`popular_bundles`) are functions that run their own batches, as is :func:`popular_items`.

Every read raises ``redis.RedisError`` when Redis fails; the client must decode responses
(``decode_responses=True``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Generic, TypeVar

import redis

from shared.store.redis_keys import CatalogKeys

T = TypeVar("T")


@dataclass(frozen=True)
class StoredItem:
    """An item of the catalog mirror (``CatalogKeys.item``)."""

    item_id: str
    title: str
    category_path: tuple[str, ...]
    affinity_category: str
    """The category a shopper's interest in the item counts under ('' when it has no category)."""
    price: float | None
    image_url: str
    retired: bool


@dataclass(frozen=True)
class StoredBundle:
    """A bundle of the catalog mirror (``CatalogKeys.bundle``)."""

    bundle_id: str
    name: str
    item_ids: tuple[str, ...]
    price: float | None
    discounted_price: float | None
    retired: bool
    source: str
    """Who made the bundle: "catalog" unless the mirror says otherwise."""


@dataclass(frozen=True)
class BundleStats:
    """Outcome counts of a bundle (``CatalogKeys.bundle_stats``); zero for a bundle never shown."""

    impressions: int
    clicks: int
    purchases: int


@dataclass(frozen=True)
class BundleFeedback:
    """A shopper's own feedback on bundles (``CatalogKeys.user_bundle_looks`` and
    ``user_bundle_clicks``); both empty for a shopper never shown a bundle."""

    looks: dict[str, float]
    """Bundle id -> looks: the sum of ``shared.bandit_features.examination_prior(p)`` over every
    impression that showed the bundle at position ``p``."""
    clicked: frozenset[str]
    """Bundles the shopper clicked."""


def _price(raw: str | None) -> float | None:
    return float(raw) if raw else None


def item_from_hash(item_id: str, fields: Mapping[str, str]) -> StoredItem:
    """The item whose mirror hash is ``fields`` (not empty: an empty hash is an unknown item)."""
    category = fields.get("category", "")
    return StoredItem(
        item_id=item_id,
        title=fields.get("title", ""),
        category_path=tuple(category.split(" > ")) if category else (),
        affinity_category=fields.get("affinity_category", ""),
        price=_price(fields.get("price")),
        image_url=fields.get("image_url", ""),
        retired=fields.get("retired") == "1",
    )


def bundle_from_hash(bundle_id: str, fields: Mapping[str, str]) -> StoredBundle:
    """The bundle whose mirror hash is ``fields`` (not empty: an empty hash is an unknown bundle)."""
    return StoredBundle(
        bundle_id=bundle_id,
        name=fields.get("name", ""),
        item_ids=tuple(json.loads(fields.get("items", "[]"))),
        price=_price(fields.get("price")),
        discounted_price=_price(fields.get("discounted_price")),
        retired=fields.get("retired") == "1",
        source=fields.get("source", "catalog") or "catalog",
    )


class Reply(Generic[T]):
    """The answer to one queued read; :attr:`value` once the batch holding it has run."""

    def __init__(self, parse: Callable[[list[Any]], T]) -> None:
        self._parse = parse
        self._value: T | None = None
        self._ready = False

    @property
    def value(self) -> T:
        """Raises RuntimeError before the batch has run."""
        if not self._ready:
            raise RuntimeError("the batch holding this read has not run yet")
        return self._value  # type: ignore[return-value]

    def _take(self, replies: list[Any]) -> None:
        self._value = self._parse(replies)
        self._ready = True


class FeatureReadBatch:
    """Reads of one catalog queued on one Redis pipeline: :meth:`run` sends them in one round trip.

    Id lists are read once per distinct id; a dict answer holds each id asked for unless it says
    otherwise, and list values keep Redis's order as documented per read.
    """

    def __init__(self, client: redis.Redis, keys: CatalogKeys) -> None:
        self._pipe = client.pipeline(transaction=False)
        self._keys = keys
        self._queued: list[tuple[int, Reply[Any]]] = []

    def run(self) -> None:
        """Sends every read queued since the last run and parses the replies. Raises redis.RedisError."""
        queued, self._queued = self._queued, []
        replies = self._pipe.execute() if any(count for count, _ in queued) else []
        at = 0
        for count, reply in queued:
            reply._take(replies[at : at + count])
            at += count

    def _queue(self, count: int, parse: Callable[[list[Any]], T]) -> Reply[T]:
        reply = Reply(parse)
        self._queued.append((count, reply))
        return reply

    # --- catalog mirror -------------------------------------------------------------------------------
    def catalog_version(self) -> Reply[str | None]:
        """The catalog's version token (``CatalogKeys.catalog_version``); None before its first write."""
        self._pipe.get(self._keys.catalog_version())
        return self._queue(1, lambda replies: replies[0])

    def has_live_bundles(self) -> Reply[bool]:
        """Whether the catalog has at least one live bundle."""
        self._pipe.exists(self._keys.live_bundles())
        return self._queue(1, lambda replies: bool(replies[0]))

    def live_bundles(self) -> Reply[set[str]]:
        """Every live bundle id of the catalog."""
        self._pipe.smembers(self._keys.live_bundles())
        return self._queue(1, lambda replies: set(replies[0]))

    def live_among(self, bundle_ids: Sequence[str]) -> Reply[dict[str, bool]]:
        """Whether each of ``bundle_ids`` is live."""
        ids = _distinct(bundle_ids)
        if not ids:
            return self._queue(0, lambda replies: {})
        self._pipe.smismember(self._keys.live_bundles(), ids)
        return self._queue(1, lambda replies: {b: bool(flag) for b, flag in zip(ids, replies[0], strict=True)})

    def items(self, item_ids: Sequence[str]) -> Reply[dict[str, StoredItem]]:
        """The items of ``item_ids`` that the mirror holds (retired ones included); unknown ids are left out."""
        ids = _distinct(item_ids)
        for item_id in ids:
            self._pipe.hgetall(self._keys.item(item_id))
        return self._queue(
            len(ids),
            lambda replies: {i: item_from_hash(i, fields) for i, fields in zip(ids, replies, strict=True) if fields},
        )

    def bundles(self, bundle_ids: Sequence[str]) -> Reply[dict[str, StoredBundle]]:
        """The bundles of ``bundle_ids`` that the mirror holds (retired ones included); unknown ids are left out."""
        ids = _distinct(bundle_ids)
        for bundle_id in ids:
            self._pipe.hgetall(self._keys.bundle(bundle_id))
        return self._queue(
            len(ids),
            lambda replies: {b: bundle_from_hash(b, fields) for b, fields in zip(ids, replies, strict=True) if fields},
        )

    def bundles_of_items(self, item_ids: Sequence[str]) -> Reply[dict[str, list[str]]]:
        """The live catalog bundles holding each item, in id order (empty for an unknown item)."""
        ids = _distinct(item_ids)
        for item_id in ids:
            self._pipe.smembers(self._keys.item_bundles(item_id))
        return self._queue(len(ids), lambda replies: dict(zip(ids, map(sorted, replies), strict=True)))

    def bundles_of_categories(self, categories: Sequence[str]) -> Reply[dict[str, list[str]]]:
        """The live bundles of each affinity category, in id order (see :func:`most_bought_bundles_by_category`)."""
        ids = _distinct(categories)
        for category in ids:
            self._pipe.smembers(self._keys.category_bundles(category))
        return self._queue(len(ids), lambda replies: dict(zip(ids, map(sorted, replies), strict=True)))

    # --- features from events -------------------------------------------------------------------------
    def recent_items(self, user_id: str, n: int) -> Reply[list[str]]:
        """The user's ``n`` most recently seen items, latest first."""
        self._pipe.zrevrange(self._keys.user_recent_items(user_id), 0, n - 1)
        return self._queue(1, lambda replies: list(replies[0]))

    def category_affinity(self, user_id: str, n: int) -> Reply[list[tuple[str, float]]]:
        """The user's ``n`` strongest affinity categories as (category, weight), strongest first."""
        self._pipe.zrevrange(self._keys.user_categories(user_id), 0, n - 1, withscores=True)
        return self._queue(1, lambda replies: [(c, float(w)) for c, w in replies[0]])

    def purchased_bundles(self, user_id: str) -> Reply[set[str]]:
        """The bundles the user bought."""
        self._pipe.smembers(self._keys.user_bundles(user_id))
        return self._queue(1, lambda replies: set(replies[0]))

    def bundle_feedback(self, user_id: str) -> Reply[BundleFeedback]:
        """The user's looks at and clicks on bundles (two commands in this batch)."""
        self._pipe.hgetall(self._keys.user_bundle_looks(user_id))
        self._pipe.smembers(self._keys.user_bundle_clicks(user_id))
        return self._queue(
            2,
            lambda replies: BundleFeedback(
                looks={b: float(looks) for b, looks in replies[0].items()}, clicked=frozenset(replies[1])
            ),
        )

    def neighbours(self, item_ids: Sequence[str], k: int) -> Reply[dict[str, list[tuple[str, float]]]]:
        """Each item's ``k`` most co-bought items as (item, shared baskets), most first."""
        ids = _distinct(item_ids)
        for item_id in ids:
            self._pipe.zrevrange(self._keys.item_neighbours(item_id), 0, k - 1, withscores=True)
        return self._queue(
            len(ids),
            lambda replies: {i: [(n, float(s)) for n, s in scored] for i, scored in zip(ids, replies, strict=True)},
        )

    def bundle_purchases(self, bundle_ids: Sequence[str]) -> Reply[dict[str, int]]:
        """How often each bundle was bought (0 for one never bought)."""
        ids = _distinct(bundle_ids)
        if not ids:
            return self._queue(0, lambda replies: {})
        self._pipe.zmscore(self._keys.bundle_popularity(), ids)
        return self._queue(1, lambda replies: {b: int(s or 0) for b, s in zip(ids, replies[0], strict=True)})

    def all_bundle_purchases(self) -> Reply[dict[str, int]]:
        """Purchases of every bundle ever bought."""
        self._pipe.zrange(self._keys.bundle_popularity(), 0, -1, withscores=True)
        return self._queue(1, lambda replies: {b: int(s) for b, s in replies[0]})

    def most_bought_bundles(self, n: int) -> Reply[list[tuple[str, float]]]:
        """The ``n`` most bought bundles (retired ones included) as (bundle, purchases), most first;
        ties in reverse id order."""
        self._pipe.zrevrange(self._keys.bundle_popularity(), 0, n - 1, withscores=True)
        return self._queue(1, lambda replies: [(b, float(s)) for b, s in replies[0]])

    def bundle_stats(self, bundle_ids: Sequence[str]) -> Reply[dict[str, BundleStats]]:
        """Outcome counts of each bundle."""
        ids = _distinct(bundle_ids)
        for bundle_id in ids:
            self._pipe.hgetall(self._keys.bundle_stats(bundle_id))
        return self._queue(
            len(ids),
            lambda replies: {b: _bundle_stats(stats) for b, stats in zip(ids, replies, strict=True)},
        )

    def item_interactions(self, days: Iterable[date]) -> Reply[list[tuple[str, float]]]:
        """Weighted interactions per item summed over ``days`` (event time, UTC), in no set order."""
        day_keys = [self._keys.item_popularity_day(f"{day:%Y%m%d}") for day in days]
        self._pipe.zunion(day_keys, withscores=True)
        return self._queue(1, lambda replies: [(i, float(s)) for i, s in replies[0]])


def most_bought_bundles_by_category(
    client: redis.Redis, keys: CatalogKeys, categories: Sequence[str], limit: int
) -> dict[str, list[str]]:
    """For each affinity category, at most ``limit`` of its live bundles by purchases (most first),
    then by id. Two round trips."""
    batch = FeatureReadBatch(client, keys)
    members = batch.bundles_of_categories(categories)
    batch.run()
    purchases = batch.bundle_purchases(sorted({b for ids in members.value.values() for b in ids}))
    batch.run()
    bought = purchases.value
    return {
        category: sorted(bundle_ids, key=lambda b: (-bought.get(b, 0), b))[:limit]
        for category, bundle_ids in members.value.items()
    }


def popular_bundles(client: redis.Redis, keys: CatalogKeys, k: int) -> list[tuple[str, float]]:
    """At most ``k`` live bundles as (bundle, purchases): the most bought first (ties in reverse id
    order), topped up with the live bundles never bought among them in id order (purchases 0).
    Two round trips, three when fewer than ``k`` live bundles were bought."""
    batch = FeatureReadBatch(client, keys)
    # Four times k: some of the most bought may have been retired since.
    bought = batch.most_bought_bundles(4 * k)
    batch.run()
    live = batch.live_among([b for b, _ in bought.value])
    batch.run()
    result = [(b, purchases) for b, purchases in bought.value if live.value[b]][:k]
    if len(result) < k:
        every_live = batch.live_bundles()
        batch.run()
        taken = {b for b, _ in result}
        result += [(b, 0.0) for b in sorted(every_live.value) if b not in taken][: k - len(result)]
    return result


def popular_items(client: redis.Redis, keys: CatalogKeys, k: int, last_day: date, days: int) -> list[tuple[str, float]]:
    """At most ``k`` items by weighted interactions over ``days`` days of event time ending on
    ``last_day``, as (item, interactions), most first, ties by id. One round trip."""
    batch = FeatureReadBatch(client, keys)
    counts = batch.item_interactions(last_day - timedelta(days=n) for n in range(days))
    batch.run()
    return sorted(counts.value, key=lambda pair: (-pair[1], pair[0]))[:k]


def _distinct(ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _bundle_stats(stats: Mapping[str, str]) -> BundleStats:
    return BundleStats(
        impressions=int(stats.get("impressions", 0)),
        clicks=int(stats.get("clicks", 0)),
        purchases=int(stats.get("purchases", 0)),
    )
