"""Complete-the-bundle data (issue 5): one domain's items, bundles and sessions, and its seeded split.

A :class:`CompletionDomain` is built from a domain's files alone (:func:`amazon_completion_domain`,
:func:`steam_completion_domain`), so the evaluation runs unchanged on a new domain.

The **candidate set** is every item with a non-empty title; items are numbered ``0 .. n_items - 1``
in that set, in ascending source-id order. Bundle and session items outside it (session items of
BundleRec_Amazon outside bundles have no title) are dropped: nothing could recommend them and no
text describes them.

The **split** (:func:`split_bundles`) is over the bundles holding at least 2 distinct candidate
items: a seeded shuffle, the first 80% train, the next 10% tune, the rest test. One item of every
tune or test bundle, drawn with the same seed, is hidden; the others are the query. Sessions that
contain a tune or test bundle are left out of training. A query's user history holds only the
owner's training bundles from earlier days and other sessions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from services.embedding.fusion import MAX_CATEGORY_PATHS, item_document
from shared.datasets.amazon import AmazonDomain
from shared.datasets.steam import SteamCatalog

TRAIN_FRACTION = 0.8
TUNE_FRACTION = 0.1


@dataclass(frozen=True)
class CompletionBundle:
    """A bundle with items as candidate indices (distinct, in the file's order).

    ``session`` and ``user`` are ``None`` where the domain has none (Steam); ``timestamp`` is Unix
    seconds, ``0`` where unknown.
    """

    bundle_id: str
    items: tuple[int, ...]
    session: int | None = None
    user: int | None = None
    timestamp: int = 0


@dataclass(frozen=True)
class CompletionDomain:
    """Everything the completion task reads about one domain.

    ``titles[i]`` is item ``i``'s title; ``texts[i]`` its title with its category path or tags,
    what the main method encodes; ``categories[i]`` one coarse category for diversity (``""`` if
    none). ``sessions`` maps a session id to its candidate items.
    """

    name: str
    item_ids: tuple[str, ...]
    titles: tuple[str, ...]
    texts: tuple[str, ...]
    categories: tuple[str, ...]
    bundles: tuple[CompletionBundle, ...]
    sessions: dict[int, tuple[int, ...]]

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


@dataclass(frozen=True)
class CompletionQuery:
    """One held-out bundle: rank ``hidden`` among all candidates, given ``given`` (never empty).

    ``history`` holds the items of the owner's training bundles dated strictly earlier than this
    bundle (and from another session).
    """

    bundle_id: str
    given: tuple[int, ...]
    hidden: int
    history: tuple[int, ...] = ()


@dataclass(frozen=True)
class CompletionSplit:
    """One seeded split: full training bundles, the training sessions, tune and test queries."""

    seed: int
    train_bundles: tuple[CompletionBundle, ...]
    train_sessions: tuple[tuple[int, ...], ...]
    tune: tuple[CompletionQuery, ...]
    test: tuple[CompletionQuery, ...]
    left_out_sessions: int


def _distinct(items: Sequence[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(items))


def amazon_completion_domain(domain: AmazonDomain) -> CompletionDomain:
    """A BundleRec_Amazon domain: text is the title plus its category paths (up to 2), as the embedding
    service's EmbedItems writes it (:func:`item_document`); the category
    for diversity is the last level of its deepest path."""
    titled = sorted(item_id for item_id, item in domain.items.items() if item.title.strip())
    index = {item_id: position for position, item_id in enumerate(titled)}
    titles, texts, categories = [], [], []
    for item_id in titled:
        item = domain.items[item_id]
        paths = [" > ".join(path) for path in item.category_paths[:MAX_CATEGORY_PATHS] if path]
        titles.append(item.title.strip())
        texts.append(item_document(item.title, paths))
        deepest = max(item.category_paths, key=len, default=())
        categories.append(deepest[-1] if deepest else "")
    bundles = []
    for bundle in domain.bundles.values():
        items = _distinct([index[i] for i in bundle.item_ids if i in index])
        bundles.append(
            CompletionBundle(str(bundle.bundle_id), items, bundle.session_id, bundle.user_id, bundle.timestamp)
        )
    sessions = {
        session_id: _distinct([index[i] for i in session.item_ids if i in index])
        for session_id, session in domain.sessions.items()
    }
    return CompletionDomain(
        name=domain.name,
        item_ids=tuple(str(item_id) for item_id in titled),
        titles=tuple(titles),
        texts=tuple(texts),
        categories=tuple(categories),
        bundles=tuple(bundles),
        sessions=sessions,
    )


def steam_completion_domain(catalog: SteamCatalog, max_tags: int = 8) -> CompletionDomain:
    """Steam's bundles over the games they hold: text is the title, genres and the first
    ``max_tags`` tags from the game metadata (the bundle page's name and genres when the game has
    no metadata); the category for diversity is the first genre. No sessions, no users."""
    names: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}
    for bundle in catalog.bundles.values():
        for item in bundle.items:
            if item.item_id is None or item.item_id in names:
                continue
            game = catalog.games.get(item.item_id)
            if game is not None and game.title.strip():
                names[item.item_id] = (game.title.strip(), game.genres, game.tags)
            elif item.name.strip():
                names[item.item_id] = (item.name.strip(), item.genres, ())
    ordered = sorted(names, key=lambda game_id: (len(game_id), game_id))
    index = {game_id: position for position, game_id in enumerate(ordered)}
    titles, texts, categories = [], [], []
    for game_id in ordered:
        title, genres, tags = names[game_id]
        titles.append(title)
        described = list(dict.fromkeys([*genres, *tags[:max_tags]]))
        texts.append(item_document(title, [", ".join(described)]))
        categories.append(genres[0] if genres else "")
    bundles = tuple(
        CompletionBundle(bundle.bundle_id, _distinct([index[i.item_id] for i in bundle.items if i.item_id in index]))
        for bundle in sorted(catalog.bundles.values(), key=lambda b: (len(b.bundle_id), b.bundle_id))
    )
    return CompletionDomain(
        name="steam",
        item_ids=tuple(ordered),
        titles=tuple(titles),
        texts=tuple(texts),
        categories=tuple(categories),
        bundles=bundles,
        sessions={},
    )


def split_bundles(domain: CompletionDomain, seed: int, drop_session_mates: bool = False) -> CompletionSplit:
    """The seeded 8:1:1 split over the bundles with at least 2 candidate items (see the module).

    With ``n`` such bundles, train holds ``round(0.8 n)``, tune ``round(0.1 n)``, test the rest.
    The same ``seed`` always gives the same split and the same hidden items.

    ``drop_session_mates`` also removes from training every bundle that shares a session with a
    tune or test bundle (annotators often marked overlapping bundles in one session, so such a
    training bundle can hold the very pair a test query asks for); tune and test stay the same.
    """
    eligible = [bundle for bundle in domain.bundles if len(bundle.items) >= 2]
    order = list(range(len(eligible)))
    rng = random.Random(seed)
    rng.shuffle(order)
    n_train = round(TRAIN_FRACTION * len(order))
    n_tune = round(TUNE_FRACTION * len(order))
    train = tuple(eligible[i] for i in sorted(order[:n_train]))
    tune_bundles = [eligible[i] for i in sorted(order[n_train : n_train + n_tune])]
    test_bundles = [eligible[i] for i in sorted(order[n_train + n_tune :])]
    held_out_sessions = {b.session for b in (*tune_bundles, *test_bundles) if b.session is not None}
    if drop_session_mates:
        train = tuple(b for b in train if b.session is None or b.session not in held_out_sessions)
    train_sessions = tuple(
        items
        for session_id, items in sorted(domain.sessions.items())
        if session_id not in held_out_sessions and len(items) >= 2
    )
    by_user: dict[int, list[CompletionBundle]] = {}
    for bundle in train:
        if bundle.user is not None:
            by_user.setdefault(bundle.user, []).append(bundle)

    def query(bundle: CompletionBundle) -> CompletionQuery:
        hidden = bundle.items[rng.randrange(len(bundle.items))]
        owned = by_user.get(bundle.user, []) if bundle.user is not None else []
        # Strictly earlier: a bundle of the same day or session is bought with this one, not before it.
        earlier = [
            b for b in owned if b.timestamp < bundle.timestamp and (b.session is None or b.session != bundle.session)
        ]
        history = _distinct([item for b in earlier for item in b.items])
        return CompletionQuery(bundle.bundle_id, tuple(i for i in bundle.items if i != hidden), hidden, history)

    return CompletionSplit(
        seed=seed,
        train_bundles=train,
        train_sessions=train_sessions,
        tune=tuple(query(b) for b in tune_bundles),
        test=tuple(query(b) for b in test_bundles),
        left_out_sessions=len(held_out_sessions),
    )
