"""Reader for the UCSD Steam bundles (Pathak et al., SIGIR 2017) and Steam game metadata.

Files under ``<data_dir>/Steam_bundles/``: ``bundle_data.json.gz`` and ``steam_games.json.gz``, gzip
text with one Python dict literal per line (single quotes, ``u'...'`` strings), read with
``ast.literal_eval``; they are not JSON.
"""

from __future__ import annotations

import ast
import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.datasets.data_dir import STEAM_FOLDER, require_file
from shared.datasets.errors import MalformedLineError

BUNDLES_FILE = f"{STEAM_FOLDER}/bundle_data.json.gz"
GAMES_FILE = f"{STEAM_FOLDER}/steam_games.json.gz"

_MONEY = re.compile(r"\$?\s*(\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")


@dataclass(frozen=True, slots=True)
class SteamGame:
    """Store metadata of one game (or DLC, soundtrack, ...), prices in US dollars.

    ``title`` is the record's ``title``, else its ``app_name``, else ``""``. ``genres`` and ``tags``
    keep the store's order (``()`` when missing). ``price`` follows :func:`parse_price`: ``0.0`` for
    free offers (``"Free To Play"``), ``None`` when missing or not a price (``"Install Now"``).
    ``release_date`` is the store's text as given: mostly ``YYYY-MM-DD``, sometimes ``"Coming Soon"``.
    """

    game_id: str
    title: str
    genres: tuple[str, ...]
    tags: tuple[str, ...]
    price: float | None
    developer: str | None
    publisher: str | None
    release_date: str | None


@dataclass(frozen=True, slots=True)
class SteamBundleItem:
    """One item of a bundle as the bundle page lists it; ``item_id`` joins :attr:`SteamGame.game_id`
    and is ``None`` for the few items whose store link has no app id (10 memberships, e.g. DLC).

    ``genres`` is the comma-separated genre text split and stripped; ``discounted_price`` is the
    item's price inside the bundle, in US dollars (see :func:`parse_price`).
    """

    item_id: str | None
    name: str
    genres: tuple[str, ...]
    discounted_price: float | None


@dataclass(frozen=True, slots=True)
class SteamBundle:
    """A bundle as sold on Steam: ``price`` is the list price and ``final_price`` the price paid,
    in US dollars; ``discount`` is a fraction (``0.65`` for ``"65%"``). ``items`` keeps page order.
    """

    bundle_id: str
    name: str
    price: float | None
    final_price: float | None
    discount: float | None
    items: tuple[SteamBundleItem, ...]


@dataclass(frozen=True, slots=True)
class SteamCatalog:
    """Every bundle by ``bundle_id`` and every game by ``game_id``."""

    games: dict[str, SteamGame]
    bundles: dict[str, SteamBundle]


def load_steam(data_dir: Path) -> SteamCatalog:
    """Reads both Steam files from ``data_dir/Steam_bundles``.

    Game records without an ``id`` (2 of the 32,135 in the UCSD file) are skipped, since nothing
    can join them. When an ``id`` repeats (``612880`` occurs twice, with equal fields apart from its
    url) the first record wins, so the published file yields 32,132 games.

    Raises:
        DatasetFileMissingError: a file is absent.
        MalformedLineError: a line is not a dict literal, or a field has an unexpected type.
    """
    games: dict[str, SteamGame] = {}
    for game in _read_games(require_file(data_dir, GAMES_FILE)):
        games.setdefault(game.game_id, game)
    bundles: dict[str, SteamBundle] = {}
    bundles_path = require_file(data_dir, BUNDLES_FILE)
    for line, record in _read_dict_literals(bundles_path):
        bundle = _bundle_from_record(bundles_path, line, record)
        if bundle.bundle_id in bundles:
            raise MalformedLineError(bundles_path, line, "each bundle_id once", bundle.bundle_id)
        bundles[bundle.bundle_id] = bundle
    return SteamCatalog(games=games, bundles=bundles)


def parse_price(value: object) -> float | None:
    """A store price in dollars: ``'$73.86'`` -> 73.86, ``'$1,299.00'`` -> 1299.0, ``4.99`` -> 4.99.

    Text that mentions "free" (``'Free'``, ``'Free To Play'``, ``'Play for Free!'``) gives ``0.0``.
    ``None``, ``''`` and text that is not a plain amount (``'Install Now'``, ``'Starting at
    $449.00'``, a lower bound rather than a price) give ``None``.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if "free" in text.lower():
        return 0.0
    amount = _MONEY.fullmatch(text)
    if amount is None:
        return None
    return float(amount.group(1).replace(",", ""))


def parse_discount(value: object) -> float | None:
    """A discount as a fraction: ``'65%'`` -> 0.65, ``'7.5%'`` -> 0.075; ``None`` when absent or
    not a percentage."""
    if not isinstance(value, str):
        return None
    percent = _PERCENT.fullmatch(value.strip())
    if percent is None:
        return None
    return float(percent.group(1)) / 100.0


def _read_games(path: Path) -> Iterator[SteamGame]:
    for line, record in _read_dict_literals(path):
        if record.get("id") is None:
            continue
        title = _optional_text(path, line, record, "title") or _optional_text(path, line, record, "app_name")
        yield SteamGame(
            game_id=_text(path, line, record, "id"),
            title=title or "",
            genres=_text_tuple(path, line, record, "genres"),
            tags=_text_tuple(path, line, record, "tags"),
            price=parse_price(record.get("price")),
            developer=_optional_text(path, line, record, "developer"),
            publisher=_optional_text(path, line, record, "publisher"),
            release_date=_optional_text(path, line, record, "release_date"),
        )


def _bundle_from_record(path: Path, line: int, record: dict[str, object]) -> SteamBundle:
    raw_items = record.get("items", [])
    if not isinstance(raw_items, list):
        raise MalformedLineError(path, line, "'items' to be a list", type(raw_items).__name__)
    items: list[SteamBundleItem] = []
    for raw_item in raw_items:
        if not isinstance(raw_item, dict):
            raise MalformedLineError(path, line, "each bundle item to be a dict", type(raw_item).__name__)
        genre_text = _optional_text(path, line, raw_item, "genre") or ""
        items.append(
            SteamBundleItem(
                item_id=_optional_text(path, line, raw_item, "item_id") or None,
                name=_optional_text(path, line, raw_item, "item_name") or "",
                genres=tuple(genre.strip() for genre in genre_text.split(",") if genre.strip()),
                discounted_price=parse_price(raw_item.get("discounted_price")),
            )
        )
    return SteamBundle(
        bundle_id=_text(path, line, record, "bundle_id"),
        name=_optional_text(path, line, record, "bundle_name") or "",
        price=parse_price(record.get("bundle_price")),
        final_price=parse_price(record.get("bundle_final_price")),
        discount=parse_discount(record.get("bundle_discount")),
        items=tuple(items),
    )


def _read_dict_literals(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """Yields (1-based line, dict) for each non-blank line of a gzip file of dict literals."""
    with gzip.open(path, mode="rt", encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = ast.literal_eval(line)
            except (ValueError, SyntaxError, MemoryError, RecursionError) as error:
                raise MalformedLineError(
                    path, line_number, "a Python dict literal", f"{type(error).__name__}: {line[:80]!r}"
                ) from error
            if not isinstance(record, dict) or not all(isinstance(key, str) for key in record):
                raise MalformedLineError(path, line_number, "a dict literal with string keys", type(record).__name__)
            yield line_number, record


def _optional_text(path: Path, line: int, record: dict[str, object], key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedLineError(path, line, f"'{key}' to be text", f"{type(value).__name__} {value!r}")
    return value


def _text(path: Path, line: int, record: dict[str, object], key: str) -> str:
    value = _optional_text(path, line, record, key)
    if not value:
        raise MalformedLineError(path, line, f"a non-empty '{key}'", repr(value))
    return value


def _text_tuple(path: Path, line: int, record: dict[str, object], key: str) -> tuple[str, ...]:
    value = record.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(element, str) for element in value):
        raise MalformedLineError(path, line, f"'{key}' to be a list of text", repr(value)[:80])
    return tuple(value)
