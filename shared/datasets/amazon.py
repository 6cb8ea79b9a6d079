"""Reader for BundleRec_Amazon (Sun et al., SIGIR 2022): purchase sessions with crowd-marked bundles.

One domain at a time, from ``<data_dir>/BundleRec_Amazon/<domain>/``: comma-separated CSV files with
a header row, quoted text fields, some holding newlines. ``user_item.csv`` is not read: it equals
``user_bundle`` joined with ``bundle_item`` (see SOURCE.md), so it is derivable from the bundles.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from shared.datasets.data_dir import AMAZON_FOLDER, require_file
from shared.datasets.errors import DatasetError, MalformedLineError

AmazonDomainName = Literal["electronic", "clothing"]
AMAZON_DOMAINS: tuple[AmazonDomainName, ...] = get_args(AmazonDomainName)

CategoryPaths = tuple[tuple[str, ...], ...]

# A level name may itself hold ", " ("Clothing, Shoes & Jewelry"); levels are joined by a bare ",".
# Measured on every category string of both domains: no level name starts with a space.
_LEVEL_SEPARATOR = re.compile(r",(?! )")
_PATH_SEPARATOR = re.compile(r"\s*,\s*")


@dataclass(frozen=True, slots=True)
class AmazonItem:
    """A product that occurs in some bundle: its title and Amazon category paths.

    ``title`` is ``""`` and ``category_paths`` is ``()`` when the item is absent from
    ``item_titles.csv`` or ``item_categories.csv`` respectively. Each category path runs from the
    root down, e.g. ``("Electronics", "Camera & Photo", "Bags & Cases")``.
    """

    item_id: int
    title: str
    category_paths: CategoryPaths


@dataclass(frozen=True, slots=True)
class AmazonBundle:
    """A bundle annotators marked inside one user's purchase session.

    ``timestamp`` is Unix seconds (day resolution). ``item_ids`` keeps ``bundle_item.csv`` order.
    ``intent`` is the annotator's text with surrounding whitespace removed (``""`` if none was
    written). ``session_id`` is ``None`` when ``session_bundle.csv`` does not place the bundle.
    """

    bundle_id: int
    user_id: int
    timestamp: int
    item_ids: tuple[int, ...]
    intent: str
    session_id: int | None


@dataclass(frozen=True, slots=True)
class AmazonSession:
    """A purchase session: the items bought together, in ``session_item.csv`` order.

    ``user_id`` and ``timestamp`` (Unix seconds) are ``None`` for sessions that
    ``user_session.csv`` does not list (213 clothing sessions); ``item_ids`` is ``()`` for a session
    listed there without items.
    """

    session_id: int
    user_id: int | None
    timestamp: int | None
    item_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AmazonDomain:
    """One BundleRec_Amazon domain.

    ``items`` holds the items with a title or category (the bundle items); other session items are
    bare ids. ``user_source_ids`` maps every row of ``user_idx_mapping.csv`` to its Amazon reviewer
    id; ``item_source_ids`` maps to ASINs only the items that occur in a session, a bundle or
    ``items``, not the whole item space of ``item_idx_mapping.csv``.
    """

    name: AmazonDomainName
    items: dict[int, AmazonItem]
    bundles: dict[int, AmazonBundle]
    sessions: dict[int, AmazonSession]
    user_source_ids: dict[int, str]
    item_source_ids: dict[int, str]


def load_amazon_domain(data_dir: Path, domain: AmazonDomainName) -> AmazonDomain:
    """Reads one domain from ``data_dir/BundleRec_Amazon/<domain>``.

    Raises:
        ValueError: ``domain`` is not one of :data:`AMAZON_DOMAINS`.
        DatasetFileMissingError: a file is absent.
        MalformedLineError: a header differs from the documented columns, a record has the wrong
            number of fields, an id or timestamp is not an integer, a category string cannot be
            parsed, an id is listed twice where it must be unique, or a row refers to a bundle or
            session that the other files do not define.
        DatasetError: a bundle of ``user_bundle.csv`` has no items.
    """
    if domain not in AMAZON_DOMAINS:
        raise ValueError(f"unknown BundleRec_Amazon domain {domain!r}; expected one of {AMAZON_DOMAINS}")
    folder = f"{AMAZON_FOLDER}/{domain}"

    def domain_file(name: str) -> Path:
        return require_file(data_dir, f"{folder}/{name}")

    items = _read_items(domain_file("item_titles.csv"), domain_file("item_categories.csv"))
    bundles = _read_bundles(
        domain_file("user_bundle.csv"),
        domain_file("bundle_item.csv"),
        domain_file("bundle_intent.csv"),
        domain_file("session_bundle.csv"),
    )
    sessions = _read_sessions(domain_file("user_session.csv"), domain_file("session_item.csv"))
    _check_bundle_sessions_exist(bundles, sessions, domain_file("session_bundle.csv"))

    used_item_ids = set(items)
    for bundle in bundles.values():
        used_item_ids.update(bundle.item_ids)
    for session in sessions.values():
        used_item_ids.update(session.item_ids)

    return AmazonDomain(
        name=domain,
        items=items,
        bundles=bundles,
        sessions=sessions,
        user_source_ids=_read_source_ids(domain_file("user_idx_mapping.csv"), "user ID", keep=None),
        item_source_ids=_read_source_ids(domain_file("item_idx_mapping.csv"), "item ID", keep=used_item_ids),
    )


def parse_category_paths(text: str) -> CategoryPaths:
    """Parses the not-JSON category format ``[[a,b,c],[d,e]]`` into ``(("a","b","c"),("d","e"))``.

    Level names are stripped; a comma followed by a space belongs to the name
    (``[[Clothing, Shoes & Jewelry,Women]]`` has two levels). ``""`` and ``"[]"`` give ``()``.

    Raises:
        ValueError: the brackets are missing, unbalanced or nested deeper than two levels.
    """
    stripped = text.strip()
    if stripped in ("", "[]"):
        return ()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        raise ValueError("expected the list of paths to be enclosed in '[' and ']'")
    body = stripped[1:-1].strip()
    paths: list[tuple[str, ...]] = []
    position = 0
    while position < len(body):
        if body[position] != "[":
            raise ValueError(f"expected '[' opening a category path at character {position + 2}")
        closing = body.find("]", position)
        if closing < 0:
            raise ValueError(f"the category path opened at character {position + 2} is not closed")
        levels = body[position + 1 : closing]
        if "[" in levels:
            raise ValueError(f"unexpected '[' inside the category path at character {position + 2}")
        paths.append(tuple(level.strip() for level in _LEVEL_SEPARATOR.split(levels) if level.strip()))
        position = closing + 1
        if position < len(body):
            separator = _PATH_SEPARATOR.match(body, position)
            if separator is None or separator.end() == position or separator.end() == len(body):
                raise ValueError(f"expected ',' and another path at character {position + 2}")
            position = separator.end()
    return tuple(paths)


def _read_items(titles_path: Path, categories_path: Path) -> dict[int, AmazonItem]:
    titles: dict[int, str] = {}
    for line, (item_text, title) in _read_csv(titles_path, ("item ID", "titles")):
        item_id = _parse_int(titles_path, line, "item ID", item_text)
        _require_new_key(titles, item_id, titles_path, line, "item ID")
        titles[item_id] = title
    categories: dict[int, CategoryPaths] = {}
    for line, (item_text, category_text) in _read_csv(categories_path, ("item ID", "categories")):
        item_id = _parse_int(categories_path, line, "item ID", item_text)
        _require_new_key(categories, item_id, categories_path, line, "item ID")
        try:
            categories[item_id] = parse_category_paths(category_text)
        except ValueError as error:
            raise MalformedLineError(
                categories_path, line, f"category paths like [[a,b],[c]] ({error})", repr(category_text)
            ) from error
    return {
        item_id: AmazonItem(item_id, titles.get(item_id, ""), categories.get(item_id, ()))
        for item_id in sorted(titles.keys() | categories.keys())
    }


def _read_bundles(
    user_bundle_path: Path, bundle_item_path: Path, bundle_intent_path: Path, session_bundle_path: Path
) -> dict[int, AmazonBundle]:
    owners: dict[int, tuple[int, int]] = {}
    for line, (user_text, bundle_text, timestamp_text) in _read_csv(
        user_bundle_path, ("user ID", "bundle ID", "timestamp")
    ):
        bundle_id = _parse_int(user_bundle_path, line, "bundle ID", bundle_text)
        _require_new_key(owners, bundle_id, user_bundle_path, line, "bundle ID (one user per bundle)")
        owners[bundle_id] = (
            _parse_int(user_bundle_path, line, "user ID", user_text),
            _parse_int(user_bundle_path, line, "timestamp", timestamp_text),
        )

    def known_bundle(path: Path, line: int, bundle_text: str) -> int:
        bundle_id = _parse_int(path, line, "bundle ID", bundle_text)
        if bundle_id not in owners:
            raise MalformedLineError(path, line, f"a bundle ID listed in {user_bundle_path.name}", bundle_text)
        return bundle_id

    bundle_items: dict[int, list[int]] = {}
    for line, (bundle_text, item_text) in _read_csv(bundle_item_path, ("bundle ID", "item ID")):
        bundle_id = known_bundle(bundle_item_path, line, bundle_text)
        bundle_items.setdefault(bundle_id, []).append(_parse_int(bundle_item_path, line, "item ID", item_text))
    intents: dict[int, str] = {}
    for line, (bundle_text, intent) in _read_csv(bundle_intent_path, ("bundle ID", "intent")):
        bundle_id = known_bundle(bundle_intent_path, line, bundle_text)
        _require_new_key(intents, bundle_id, bundle_intent_path, line, "bundle ID")
        intents[bundle_id] = intent.strip()
    bundle_sessions: dict[int, int] = {}
    for line, (session_text, bundle_text) in _read_csv(session_bundle_path, ("session ID", "bundle ID")):
        bundle_id = known_bundle(session_bundle_path, line, bundle_text)
        _require_new_key(bundle_sessions, bundle_id, session_bundle_path, line, "bundle ID (one session each)")
        bundle_sessions[bundle_id] = _parse_int(session_bundle_path, line, "session ID", session_text)

    empty_bundles = sorted(owners.keys() - bundle_items.keys())
    if empty_bundles:
        raise DatasetError(
            f"{bundle_item_path}: no items for bundles {empty_bundles[:10]} listed in {user_bundle_path.name}"
        )
    return {
        bundle_id: AmazonBundle(
            bundle_id=bundle_id,
            user_id=user_id,
            timestamp=timestamp,
            item_ids=tuple(bundle_items[bundle_id]),
            intent=intents.get(bundle_id, ""),
            session_id=bundle_sessions.get(bundle_id),
        )
        for bundle_id, (user_id, timestamp) in sorted(owners.items())
    }


def _read_sessions(user_session_path: Path, session_item_path: Path) -> dict[int, AmazonSession]:
    owners: dict[int, tuple[int, int]] = {}
    for line, (user_text, session_text, timestamp_text) in _read_csv(
        user_session_path, ("user ID", "session ID", "timestamp")
    ):
        session_id = _parse_int(user_session_path, line, "session ID", session_text)
        _require_new_key(owners, session_id, user_session_path, line, "session ID (one user per session)")
        owners[session_id] = (
            _parse_int(user_session_path, line, "user ID", user_text),
            _parse_int(user_session_path, line, "timestamp", timestamp_text),
        )
    session_items: dict[int, list[int]] = {}
    for line, (session_text, item_text) in _read_csv(session_item_path, ("session ID", "item ID")):
        session_id = _parse_int(session_item_path, line, "session ID", session_text)
        session_items.setdefault(session_id, []).append(_parse_int(session_item_path, line, "item ID", item_text))
    sessions: dict[int, AmazonSession] = {}
    for session_id in sorted(owners.keys() | session_items.keys()):
        user_id, timestamp = owners.get(session_id, (None, None))
        sessions[session_id] = AmazonSession(session_id, user_id, timestamp, tuple(session_items.get(session_id, ())))
    return sessions


def _check_bundle_sessions_exist(
    bundles: dict[int, AmazonBundle], sessions: dict[int, AmazonSession], session_bundle_path: Path
) -> None:
    for bundle in bundles.values():
        if bundle.session_id is not None and bundle.session_id not in sessions:
            raise DatasetError(
                f"{session_bundle_path}: bundle {bundle.bundle_id} is placed in session "
                f"{bundle.session_id}, which neither user_session.csv nor session_item.csv lists"
            )


def _read_source_ids(path: Path, id_column: str, keep: set[int] | None) -> dict[int, str]:
    """Maps ids to source ids; with ``keep``, only the ids in it (the item mapping is large)."""
    source_ids: dict[int, str] = {}
    for line, (id_text, source_id) in _read_csv(path, (id_column, "source ID")):
        local_id = _parse_int(path, line, id_column, id_text)
        if keep is not None and local_id not in keep:
            continue
        _require_new_key(source_ids, local_id, path, line, id_column)
        source_ids[local_id] = source_id
    return source_ids


def _read_csv(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """Yields (line where the record starts, fields) for each record after the header.

    Raises MalformedLineError when the header is not ``columns`` or a record has another number of
    fields. Records may span several physical lines (quoted newlines).
    """
    with path.open(encoding="utf-8-sig", newline="") as csv_file:
        reader = csv.reader(csv_file)
        try:
            header = next(reader, None)
        except csv.Error as error:
            raise MalformedLineError(path, 1, f"a CSV header {','.join(columns)}", str(error)) from error
        if header is None or tuple(field.strip() for field in header) != columns:
            raise MalformedLineError(path, 1, f"the CSV header {','.join(columns)}", repr(header))
        while True:
            record_start = reader.line_num + 1
            try:
                record = next(reader, None)
            except csv.Error as error:
                raise MalformedLineError(path, record_start, "a well-formed CSV record", str(error)) from error
            if record is None:
                return
            if len(record) != len(columns):
                raise MalformedLineError(
                    path, record_start, f"{len(columns)} fields ({','.join(columns)})", repr(record)
                )
            yield record_start, record


def _parse_int(path: Path, line: int, column: str, text: str) -> int:
    stripped = text.strip()
    if not (stripped.isascii() and stripped.lstrip("-").isdigit()):
        raise MalformedLineError(path, line, f"an integer {column}", repr(text))
    return int(stripped)


def _require_new_key(seen: Mapping[int, object], key: int, path: Path, line: int, column: str) -> None:
    if key in seen:
        raise MalformedLineError(path, line, f"each {column} once", f"{key} again")
