"""The gateway's ports: what it needs from the outside world, as Protocols.

The routes depend only on these; :mod:`services.gateway.wiring` plugs in the real adapters and unit
tests plug in in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.gateway.domain import NO_CONSTRAINTS, BundleConstraints, Recommendation
from shared.events import Event


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
