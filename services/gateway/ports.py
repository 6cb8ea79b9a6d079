"""The gateway's ports: what it needs from the outside world, as Protocols.

The routes depend only on these; :mod:`services.gateway.wiring` plugs in the real adapters and unit
tests plug in in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.gateway.domain import (
    NO_CONSTRAINTS,
    BundleConstraints,
    BundleSearchResult,
    Recommendation,
    RelatedItem,
    Transcript,
)
from shared.events import Event
from shared.store.api_keys import StoredKey
from shared.store.catalog import CatalogBundle, CatalogItem


class EventPublisher(Protocol):
    """Makes shopper events durable in the event log."""

    async def publish(self, events: Sequence[Event]) -> None:
        """Publishes ``events`` in the given order and returns once every one is acknowledged.

        Events of one shopper keep their relative order. On failure some events may already be
        stored; callers report none as accepted and the client retries with the same event ids,
        which consumers deduplicate (delivery is at least once).

        Raises:
            shared.errors.Unavailable: the log did not acknowledge every event within the timeout.
        """
        ...

    async def close(self) -> None:
        """Flushes what is pending (bounded by the timeout) and releases connections."""
        ...


class BundleSource(Protocol):
    """Ranks bundles for a shopper."""

    async def recommend(
        self,
        *,
        catalog_id: str,
        user_id: str,
        k: int,
        anchor_item_ids: Sequence[str],
        request_id: str,
        constraints: BundleConstraints = NO_CONSTRAINTS,
    ) -> Recommendation:
        """At most ``k`` bundles for ``user_id`` in ``catalog_id``, best first.

        ``anchor_item_ids`` are items the shopper is looking at; bundles completing them rank
        higher. ``request_id`` is passed on for tracing only.

        Raises:
            shared.errors.NotFound: the catalog is unknown.
            shared.errors.InvalidArgument: the source refused the arguments.
            shared.errors.Unavailable: the source is down or did not answer within its deadline.
        """
        ...

    async def check_ready(self) -> None:
        """Returns when the source can answer now.

        Raises:
            shared.errors.Unavailable: it cannot (with the reason).
        """
        ...

    async def close(self) -> None:
        """Releases connections; no call may follow."""
        ...


@dataclass(frozen=True, slots=True)
class UserErasure:
    """What deleting one shopper removed."""

    events_deleted: int
    user_row_deleted: bool
    keys_deleted: int
    aggregates_corrected: int


class UserDataEraser(Protocol):
    """Deletes a shopper's personal data from the feature store on request."""

    async def delete_user(self, *, catalog_id: str, user_id: str) -> UserErasure:
        """Removes ``user_id``'s rows, features and share of aggregates from ``catalog_id`` and
        deny-lists them for replays. Idempotent: deleting an unknown or deleted user removes nothing.

        Raises:
            shared.errors.Unavailable: PostgreSQL or Redis is down; nothing or all is deleted, retry.
        """
        ...

    async def close(self) -> None:
        """Releases connections; no call may follow."""
        ...


class KeyStore(Protocol):
    """Where API keys are kept (``shared.store.api_keys``)."""

    async def find(self, digest: str) -> StoredKey | None:
        """The key whose HMAC is ``digest`` (revoked or not), or None.

        Raises:
            shared.errors.Unavailable: the store cannot be asked now.
        """
        ...

    async def close(self) -> None:
        """Releases connections; no call may follow."""
        ...


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether one request may pass; when not, ``retry_after_s`` until a token is back."""

    allowed: bool
    retry_after_s: float = 0.0


class RateLimiter(Protocol):
    """Token buckets per API key, shared by every gateway process."""

    async def take(self, key_id: str, rate_per_s: float, burst: int) -> RateDecision:
        """Takes one token from ``key_id``'s bucket (refilled at ``rate_per_s``, holding at most
        ``burst``). Never raises: when the buckets cannot be reached the request is allowed."""
        ...

    async def close(self) -> None:
        """Releases connections; no call may follow."""
        ...


class PopularBundles(Protocol):
    """The catalog's most bought live bundles, for answering when the ranker cannot."""

    async def recommend(
        self, *, catalog_id: str, user_id: str, k: int, constraints: BundleConstraints = NO_CONSTRAINTS
    ) -> Recommendation | None:
        """At most ``k`` live bundles, those of the shopper's favourite category first, then the
        catalog's; never a retired bundle or one holding a retired item. None when nothing is known
        about ``catalog_id`` or the store cannot be read (the caller keeps its own error)."""
        ...

    async def close(self) -> None:
        """Stops refreshing and releases connections; no call may follow."""
        ...


class CatalogEditor(Protocol):
    """Writes the catalog the ranker reads (PostgreSQL, mirrored to Redis)."""

    async def upsert_items(self, catalog_id: str, items: Sequence[CatalogItem]) -> None:
        """Creates or replaces ``items`` (a retired one is live again when sent again).

        Raises:
            shared.errors.NotFound: the catalog does not exist.
            shared.errors.Unavailable: PostgreSQL or Redis is down; retry the same request.
        """
        ...

    async def upsert_bundles(self, catalog_id: str, bundles: Sequence[CatalogBundle]) -> None:
        """Creates or replaces ``bundles``.

        Raises:
            shared.errors.NotFound: the catalog or an item of a bundle does not exist.
            shared.errors.Unavailable: PostgreSQL or Redis is down; retry the same request.
        """
        ...

    async def upsert_catalog(self, catalog_id: str, name: str, currency: str | None) -> None:
        """Creates or renames a catalog.

        Raises:
            shared.errors.Unavailable: PostgreSQL is down.
        """
        ...

    async def retire_item(self, catalog_id: str, item_id: str) -> bool:
        """Retires an item: no bundle holding it is recommended again. False when unknown.

        Raises:
            shared.errors.Unavailable: PostgreSQL or Redis is down; retry.
        """
        ...

    async def retire_bundle(self, catalog_id: str, bundle_id: str) -> bool:
        """Retires a bundle: it is not recommended again. False when unknown.

        Raises:
            shared.errors.Unavailable: PostgreSQL or Redis is down; retry.
        """
        ...

    async def close(self) -> None:
        """Releases connections; no call may follow."""
        ...


class RelatedItemsSource(Protocol):
    """Items that complete an item, for an item page."""

    async def related_items(self, *, catalog_id: str, item_id: str, k: int) -> list[RelatedItem]:
        """At most ``k`` companions of ``item_id``, best first.

        Raises:
            shared.errors.NotFound: the catalog does not know the item.
            shared.errors.Unavailable: the source is down or did not answer within its deadline.
        """
        ...


class BundleSearchSource(Protocol):
    """Finds a catalog's bundles by a shopper's typed query."""

    async def search_bundles(self, *, catalog_id: str, query: str, k: int) -> BundleSearchResult:
        """At most ``k`` live bundles matching ``query`` (Chinese, English, ...), best first.

        Raises:
            shared.errors.NotFound: the catalog has no live bundles.
            shared.errors.InvalidArgument: the source refused the query.
            services.gateway.errors.SearchNotReady: the catalog's bundles are not embedded for search.
            services.gateway.errors.SearchNotConfigured: the source cannot search at all.
            shared.errors.Unavailable: the source is down or did not answer within its deadline.
        """
        ...


class Transcriber(Protocol):
    """Turns a spoken query into text."""

    async def transcribe(self, *, audio: bytes, language: str) -> Transcript:
        """What ``audio`` (one encoded clip) says; ``language`` ("en", "zh") or empty to detect it.

        Raises:
            shared.errors.InvalidArgument: the clip is empty, not decodable, too long or holds no speech.
            shared.errors.Unavailable: the speech model is down or did not answer in time.
        """
        ...

    async def close(self) -> None:
        """Releases connections; no call may follow."""
        ...
