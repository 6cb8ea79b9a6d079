"""A seeded generator of realistic shopper events on the real Amazon catalog (BundleRec_Amazon).

The dataset holds what shoppers *bought* (2,113 purchase sessions, 12,488 purchases, 3,660 bundles
marked in them) but nothing of what they did on the way: no views, clicks, carts, searches, reviews
or bundle impressions. This generator turns each real purchase session into the session a
storefront would have logged around it, keeping the real shopper, day, basket and bundles:

- the session starts at a random second of the real day (the dataset has day resolution) and its
  events follow each other 5 to 90 seconds apart;
- 0 to 2 searches (60 % of sessions search), each query a few words of the title of an item the
  shopper then bought, or its category;
- views: every bought item 1 to 3 times, and 2 to 8 browsed items from the catalog that share a
  bought item's category (so browsing stays in the shopper's part of the catalog);
- clicks on 30 % of the viewed items;
- carts: every bought item, and 10 % of the browsed items (abandoned carts);
- the real purchases, then the real bundle purchases, each linked to the impression that showed
  the bundle when there was one;
- 1 to 3 bundle impressions of 4 bundles drawn from the bundles holding an item of the session's
  categories, positions 0 to 3, each with the probability the (softmax) policy gave it there, and
  the policy version; a shown bundle is clicked with probability 0.12 / (1 + position);
- a review for 12 % of bought items, 1 to 30 days later, rated with Amazon's J-shaped distribution
  (5: 50 %, 4: 28 %, 3: 10 %, 2: 5 %, 1: 7 %), its text built from the item's title;
- context: device (62 % mobile, 31 % desktop, 7 % tablet), locale and page.

One pass over the real sessions gives about 78,000 events. To reach any size, pass ``k > 0``
replays every real session as another shopper (user and session ids suffixed ``.r<k>``) on the same
day, with fresh random choices: the stream keeps the real co-purchase structure and grows the
number of shoppers. Event ids are ``<prefix>-<pass>-<n>``, so two streams with different prefixes
never share an id.

Everything random comes from one ``random.Random(seed)``: the same catalog, seed and prefix give
the same stream, byte for byte. Events are JSON (``shared.events`` schema version 1), keyed by
``catalog:user`` like the gateway's (:func:`shared.events.partition_key`).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import orjson

from services.featurestore.real_catalogs import RealCatalog
from shared.store.catalog import affinity_category

DEVICES = (("mobile", 62), ("desktop", 31), ("tablet", 7))
LOCALES = ("en-US", "en-GB", "en-CA", "de-DE", "fr-FR")
RATINGS = ((5, 50), (4, 28), (3, 10), (2, 5), (1, 7))
REVIEW_OPENINGS = ("Works as described:", "Very happy with the", "Not what I expected from the", "Solid buy:")
REVIEW_CLOSINGS = ("Would buy again.", "Arrived quickly.", "Fits well.", "Good value for the price.", "")
SEARCH_RATE = 0.6
CLICK_RATE = 0.3
ABANDONED_CART_RATE = 0.1
REVIEW_RATE = 0.12
BUNDLE_CLICK_RATE = 0.12
BUNDLES_PER_IMPRESSION = 4
POLICY_VERSIONS = ("3", "4")


@dataclass(frozen=True)
class RealSession:
    """One real purchase session of the dataset."""

    session_id: str
    user_id: str
    day: datetime
    items: tuple[str, ...]
    bundles: tuple[str, ...]


def real_sessions(catalog: RealCatalog) -> list[RealSession]:
    """The catalog's purchase sessions in time order, with the bundles bought in each.

    A bundle purchase outside any session becomes a session of its own (no items).
    """
    items: dict[str, list[str]] = defaultdict(list)
    bundles: dict[str, list[str]] = defaultdict(list)
    owner: dict[str, tuple[str, datetime]] = {}
    for event in catalog.events:
        session = event.session_id or f"{event.user_id}-{event.event_id}"
        owner.setdefault(session, (event.user_id, event.event_time))
        if event.type == "purchase":
            items[session].append(event.item_id)  # type: ignore[union-attr]
        elif event.type == "bundle_purchase":
            bundles[session].append(event.bundle_id)  # type: ignore[union-attr]
    sessions = [
        RealSession(session, user, day, tuple(items.get(session, ())), tuple(bundles.get(session, ())))
        for session, (user, day) in owner.items()
    ]
    sessions.sort(key=lambda s: (s.day, s.session_id))
    return sessions


class ShopperSimulator:
    """Extends the real sessions of ``catalog`` into full shopper sessions (see the module docstring)."""

    def __init__(self, catalog: RealCatalog, seed: int, id_prefix: str = "gen") -> None:
        self._catalog_id = catalog.catalog_id
        self._random = random.Random(seed)
        self._prefix = id_prefix
        self._sessions = real_sessions(catalog)
        self._titles = {item.item_id: item.title for item in catalog.items if item.title}
        self._category = {
            item.item_id: affinity_category(item.category_path) for item in catalog.items if item.category_path
        }
        by_category: dict[str, list[str]] = defaultdict(list)
        for item_id, category in self._category.items():
            by_category[category].append(item_id)
        self._items_by_category = dict(by_category)
        bundles_by_category: dict[str, set[str]] = defaultdict(set)
        for bundle in catalog.bundles:
            for item_id in bundle.item_ids:
                if item_id in self._category:
                    bundles_by_category[self._category[item_id]].add(bundle.bundle_id)
        self._bundles_by_category = {c: sorted(b) for c, b in bundles_by_category.items()}
        self._all_bundles = sorted(b.bundle_id for b in catalog.bundles)
        self._all_items = sorted(self._category)
        self._counter = 0

    def events(self) -> Iterator[dict[str, Any]]:
        """An endless stream of events as JSON-ready dicts: pass 0, pass 1, ... (see the docstring)."""
        replay = 0
        while True:
            for session in self._sessions:
                yield from self._session_events(session, replay)
            replay += 1

    # --- one session ----------------------------------------------------------------------------
    def _session_events(self, real: RealSession, replay: int) -> list[dict[str, Any]]:
        rnd = self._random
        suffix = f".r{replay}" if replay else ""
        user, session = real.user_id + suffix, real.session_id + suffix
        clock = real.day + timedelta(seconds=rnd.randrange(0, 86_000))
        context = {
            "device": _weighted(rnd, DEVICES),
            "locale": rnd.choice(LOCALES),
        }
        categories = sorted({self._category[i] for i in real.items if i in self._category})
        browsed = self._browsed_items(real.items, categories)
        events: list[dict[str, Any]] = []

        def emit(kind: str, page: str, **fields: Any) -> dict[str, Any]:
            nonlocal clock
            clock += timedelta(seconds=rnd.randint(5, 90))
            event = {
                "type": kind,
                "event_id": self._next_id(replay),
                "catalog_id": self._catalog_id,
                "user_id": user,
                "session_id": session,
                "event_time": _iso(clock),
                "context": {**context, "page": page},
                **fields,
            }
            events.append(event)
            return event

        if rnd.random() < SEARCH_RATE:
            for _ in range(rnd.randint(1, 2)):
                emit("search", "search", query=self._query(real.items, categories))
        viewed = [*real.items, *browsed]
        rnd.shuffle(viewed)
        for item in viewed:
            for _ in range(rnd.randint(1, 3) if item in real.items else 1):
                emit("view", "item", item_id=item)
            if rnd.random() < CLICK_RATE:
                emit("click", "item", item_id=item)
        shown = self._impressions(emit, categories, real.bundles)
        for item in real.items:
            emit("add_to_cart", "item", item_id=item)
        for item in browsed:
            if rnd.random() < ABANDONED_CART_RATE:
                emit("add_to_cart", "item", item_id=item)
        for item in real.items:
            emit("purchase", "checkout", item_id=item)
        for bundle in real.bundles:
            fields: dict[str, Any] = {"bundle_id": bundle}
            if bundle in shown:
                fields["impression_id"] = shown[bundle]
            emit("bundle_purchase", "checkout", **fields)
        for item in real.items:
            if rnd.random() < REVIEW_RATE:
                review = emit("review", "review", item_id=item, rating=_weighted(rnd, RATINGS))
                review["text"] = self._review_text(item)
                review["event_time"] = _iso(clock + timedelta(days=rnd.randint(1, 30)))
        return events

    def _browsed_items(self, bought: tuple[str, ...], categories: list[str]) -> list[str]:
        rnd = self._random
        pool = [i for c in categories for i in self._items_by_category.get(c, ())] or self._all_items
        return [i for i in rnd.sample(pool, min(len(pool), rnd.randint(2, 8))) if i not in bought]

    def _impressions(
        self, emit: Callable[..., dict[str, Any]], categories: list[str], bought_bundles: tuple[str, ...]
    ) -> dict[str, str]:
        """Emits the session's bundle impressions and clicks; returns bundle -> impression id shown in."""
        rnd = self._random
        candidates = sorted({b for c in categories for b in self._bundles_by_category.get(c, ())})
        if len(candidates) < BUNDLES_PER_IMPRESSION:
            candidates = self._all_bundles
        shown_in: dict[str, str] = {}
        for _ in range(rnd.randint(1, 3)):
            pool = rnd.sample(candidates, min(len(candidates), 12))
            # The policy often ranks what the shopper then buys: a bought bundle joins half the lists.
            for index, bundle in enumerate(bought_bundles[: len(pool)]):
                if bundle not in pool and rnd.random() < 0.5:
                    pool[index] = bundle
            weights = [rnd.uniform(0.2, 3.0) for _ in pool]
            shown: list[dict[str, Any]] = []
            for position in range(min(BUNDLES_PER_IMPRESSION, len(pool))):
                # Drawn without replacement: the propensity is this bundle's chance at this position.
                pick = rnd.choices(range(len(pool)), weights)[0]
                propensity = round(weights[pick] / sum(weights), 6)
                shown.append({"bundle_id": pool[pick], "position": position, "propensity": propensity})
                del pool[pick], weights[pick]
            impression = emit(
                "bundle_impression",
                "home",
                impression_id=f"{self._prefix}-imp-{self._counter}",
                bundles=shown,
                policy_version=rnd.choice(POLICY_VERSIONS),
                model_version="cooccurrence-v1",
            )
            for entry in shown:
                shown_in.setdefault(entry["bundle_id"], impression["impression_id"])
                if rnd.random() < BUNDLE_CLICK_RATE / (1 + entry["position"]):
                    emit(
                        "bundle_click", "home", bundle_id=entry["bundle_id"], impression_id=impression["impression_id"]
                    )
        return shown_in

    def _query(self, bought: tuple[str, ...], categories: list[str]) -> str:
        rnd = self._random
        titled = [i for i in bought if i in self._titles]
        if titled:
            words = [w for w in self._titles[rnd.choice(titled)].lower().split() if w.isalnum()]
            if words:
                start = rnd.randrange(0, max(1, len(words) - 2))
                return " ".join(words[start : start + rnd.randint(1, 3)])
        return (rnd.choice(categories) if categories else "gift ideas").lower()

    def _review_text(self, item: str) -> str:
        rnd = self._random
        title = " ".join(self._titles.get(item, "item").split()[:6])
        return f"{rnd.choice(REVIEW_OPENINGS)} {title}. {rnd.choice(REVIEW_CLOSINGS)}".strip()

    def _next_id(self, replay: int) -> str:
        self._counter += 1
        return f"{self._prefix}-{replay}-{self._counter:09d}"


def _weighted(rnd: random.Random, choices: tuple[tuple[Any, int], ...]) -> Any:
    return rnd.choices([c for c, _ in choices], [w for _, w in choices])[0]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encoded(event: dict[str, Any]) -> tuple[bytes, bytes]:
    """The Kafka key (``catalog:user``, as :func:`shared.events.partition_key`) and JSON value."""
    return f"{event['catalog_id']}:{event['user_id']}".encode(), orjson.dumps(event)


def generate(catalog: RealCatalog, count: int, seed: int, id_prefix: str = "gen") -> Iterator[tuple[bytes, bytes]]:
    """The first ``count`` events of the stream for ``seed``, encoded for Kafka (key, value)."""
    for event in islice(ShopperSimulator(catalog, seed, id_prefix).events(), count):
        yield encoded(event)
