"""The storage port of the policy service: where versioned policy snapshots live."""

from __future__ import annotations

from typing import Protocol

from services.policy.domain import PolicyParams, Snapshot


class SnapshotStore(Protocol):
    """Versioned policy snapshots per catalog. Every method raises ``shared.errors.Unavailable`` when
    the store cannot be reached; the caller may retry."""

    def latest(self, catalog_id: str) -> Snapshot | None:
        """The snapshot with the highest version of ``catalog_id``, or None if none was published."""
        ...

    def get(self, catalog_id: str, version: int) -> Snapshot | None:
        """Version ``version`` of ``catalog_id``, or None if there is no such version."""
        ...

    def history(self, catalog_id: str, limit: int) -> list[Snapshot]:
        """The ``limit`` newest snapshots of ``catalog_id``, newest first."""
        ...

    def publish(self, catalog_id: str, params: PolicyParams, note: str) -> int:
        """Stores ``params`` as the next version of ``catalog_id`` and returns that version.

        Versions start at 1 and go up by one per publish of a catalog, also under concurrent publishers:
        no two publishes of a catalog get the same version.
        """
        ...

    def catalogs(self) -> list[str]:
        """Every catalog with at least one published snapshot, sorted."""
        ...
