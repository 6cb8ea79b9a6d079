"""The real catalogs of ``BUNDLEWISE_DATA_DIR`` as catalog records and as the events that built them.

- ``amazon``: BundleRec_Amazon electronic + clothing (titles, category paths, intent-named bundles);
  each session's items become ``purchase`` events and each bundle a ``bundle_purchase``.
- ``steam``: Steam store bundles with prices and discounts, games with genres and tags; no shoppers.
- ``youshu``: the benchmark (ids only); training user-bundle pairs become ``bundle_purchase`` and
  user-item pairs ``purchase`` events, one basket per user. Tune/test pairs are never replayed.

Ids are prefixed so that the two Amazon domains, whose raw ids overlap, stay apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.datasets import AMAZON_DOMAINS, YoushuSplit, load_amazon_domain, load_steam, load_youshu
from shared.events import BundleOutcomeEvent, Event, ItemEvent
from shared.store.catalog import CatalogBundle, CatalogItem

CATALOG_IDS = ("amazon", "steam", "youshu")
# Youshu has no timestamps: its events are spaced a minute apart from this instant, in file order.
YOUSHU_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass
class RealCatalog:
    catalog_id: str
    name: str
    source: str
    currency: str | None
    items: list[CatalogItem]
    bundles: list[CatalogBundle]
    events: list[Event] = field(default_factory=list)


def _time(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def load_amazon(data_dir: Path) -> RealCatalog:
    items: list[CatalogItem] = []
    bundles: list[CatalogBundle] = []
    events: list[Event] = []
    for domain_name in AMAZON_DOMAINS:
        domain = load_amazon_domain(data_dir, domain_name)
        p = domain_name  # id prefix, e.g. "electronic-49"
        items.extend(
            CatalogItem(
                item_id=f"{p}-{item.item_id}",
                title=item.title,
                # Items list several paths, the first often a brand's ("T" > "Tommy Hilfiger"): the
                # longest is the most specific.
                category_path=max(item.category_paths, key=len) if item.category_paths else (),
                attributes={"asin": domain.item_source_ids.get(item.item_id, ""), "domain": domain_name},
            )
            for item in domain.items.values()
        )
        bundles.extend(
            CatalogBundle(
                bundle_id=f"{p}-b{bundle.bundle_id}",
                name=bundle.intent or "Bundle",
                item_ids=tuple(f"{p}-{i}" for i in bundle.item_ids),
                attributes={"domain": domain_name},
            )
            for bundle in domain.bundles.values()
        )
        for session in domain.sessions.values():
            if session.user_id is None or session.timestamp is None:
                continue  # 213 clothing sessions have no owner: nobody to attribute them to
            events.extend(
                ItemEvent(
                    type="purchase",
                    event_id=f"amazon-{p}-s{session.session_id}-i{item_id}",
                    catalog_id="amazon",
                    user_id=f"{p}-u{session.user_id}",
                    session_id=f"{p}-s{session.session_id}",
                    event_time=_time(session.timestamp),
                    item_id=f"{p}-{item_id}",
                )
                for item_id in session.item_ids
            )
        events.extend(
            BundleOutcomeEvent(
                type="bundle_purchase",
                event_id=f"amazon-{p}-b{bundle.bundle_id}",
                catalog_id="amazon",
                user_id=f"{p}-u{bundle.user_id}",
                session_id=f"{p}-s{bundle.session_id}" if bundle.session_id is not None else None,
                event_time=_time(bundle.timestamp),
                bundle_id=f"{p}-b{bundle.bundle_id}",
            )
            for bundle in domain.bundles.values()
        )
    events.sort(key=lambda e: (e.event_time, e.event_id))
    return RealCatalog("amazon", "Amazon electronics and clothing", "BundleRec_Amazon", None, items, bundles, events)


def load_steam_catalog(data_dir: Path) -> RealCatalog:
    steam = load_steam(data_dir)
    items = {
        game.game_id: CatalogItem(
            item_id=game.game_id,
            title=game.title,
            category_path=("Games", *game.genres[:1]),
            price=game.price,
            attributes={
                "genres": list(game.genres),
                "tags": list(game.tags[:10]),
                "developer": game.developer,
            },
        )
        for game in steam.games.values()
    }
    bundles = []
    for bundle in steam.bundles.values():
        member_ids = []
        for member in bundle.items:
            if member.item_id is None:
                continue
            member_ids.append(member.item_id)
            if member.item_id not in items:  # sold in a bundle but missing from the games file
                items[member.item_id] = CatalogItem(
                    item_id=member.item_id,
                    title=member.name,
                    category_path=("Games", *member.genres[:1]),
                    price=member.discounted_price,
                )
        bundles.append(
            CatalogBundle(
                bundle_id=bundle.bundle_id,
                name=bundle.name,
                item_ids=tuple(member_ids),
                price=bundle.price,
                discounted_price=bundle.final_price,
                attributes={"discount": bundle.discount},
            )
        )
    return RealCatalog("steam", "Steam store bundles", "Steam_bundles", "USD", list(items.values()), bundles)


def load_youshu_catalog(data_dir: Path) -> RealCatalog:
    youshu = load_youshu(data_dir)
    members: dict[int, list[str]] = {}
    for bundle_id, item_id in youshu.bundle_item:
        members.setdefault(bundle_id, []).append(f"i{item_id}")
    items = [CatalogItem(item_id=f"i{i}", title=f"Book {i}") for i in range(youshu.n_items)]
    bundles = [
        CatalogBundle(bundle_id=f"b{b}", name=f"Book list {b}", item_ids=tuple(members.get(b, ())))
        for b in range(youshu.n_bundles)
        if members.get(b)
    ]
    return RealCatalog(
        "youshu", "Youshu book lists (benchmark)", "Youshu", None, items, bundles, _youshu_events(youshu)
    )


def _youshu_events(youshu: YoushuSplit) -> list[Event]:
    events: list[Event] = []
    minute = timedelta(minutes=1)
    for index, (user, item) in enumerate(youshu.user_item):
        events.append(
            ItemEvent(
                type="purchase",
                event_id=f"youshu-ui-{user}-{item}",
                catalog_id="youshu",
                user_id=f"u{user}",
                session_id=f"u{user}",
                event_time=YOUSHU_EPOCH + index * minute,
                item_id=f"i{item}",
            )
        )
    offset = len(youshu.user_item)
    for index, (user, bundle) in enumerate(youshu.user_bundle_train):
        events.append(
            BundleOutcomeEvent(
                type="bundle_purchase",
                event_id=f"youshu-ub-{user}-{bundle}",
                catalog_id="youshu",
                user_id=f"u{user}",
                event_time=YOUSHU_EPOCH + (offset + index) * minute,
                bundle_id=f"b{bundle}",
            )
        )
    return events


LOADERS = {"amazon": load_amazon, "steam": load_steam_catalog, "youshu": load_youshu_catalog}


def load_real_catalogs(data_dir: Path, catalog_ids: tuple[str, ...]) -> Iterator[RealCatalog]:
    for catalog_id in catalog_ids:
        yield LOADERS[catalog_id](data_dir)
