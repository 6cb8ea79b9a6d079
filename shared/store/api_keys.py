"""API keys of the gateway: issued with scopes, stored as peppered HMACs, listed and revoked.

A key reads ``bwk_<key_id>_<secret>``. Only ``key_id`` (public, for listings and revocation) and
HMAC-SHA256(pepper, key) are stored; the pepper comes from ``BUNDLEWISE_API_KEY_PEPPER``, outside the
database, so neither a copy of the table nor a database reader can call the API. The plaintext is
returned once by :func:`issue_key` and never again.

``bin/bundlewise api-key create|list|revoke`` is the operator's way in (:func:`main`).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, RowMapping, func, insert, select, update

from shared.settings import ENV_PREFIX, PostgresSettings, SettingsError, load_settings
from shared.store import tables
from shared.store.migrate import make_engine

KEY_PREFIX = "bwk_"
PEPPER_VARIABLE = f"{ENV_PREFIX}API_KEY_PEPPER"
MIN_PEPPER_LENGTH = 16


class Scope:
    """What a key may do; each ``/v1`` route of the gateway needs exactly one."""

    RECOMMENDATIONS_READ = "recommendations:read"
    EVENTS_WRITE = "events:write"
    CATALOG_ADMIN = "catalog:admin"


SCOPES = (Scope.RECOMMENDATIONS_READ, Scope.EVENTS_WRITE, Scope.CATALOG_ADMIN)


class UnknownScope(ValueError):
    """A scope that is not one of :data:`SCOPES`."""


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key as stored: everything but the secret. ``rate_per_s``/``burst`` None: the gateway's default."""

    key_id: str
    name: str
    scopes: frozenset[str]
    rate_per_s: float | None
    burst: int | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def pepper_from_environment() -> str:
    """``BUNDLEWISE_API_KEY_PEPPER``.

    Raises:
        SettingsError: unset or shorter than 16 characters.
    """
    pepper = os.environ.get(PEPPER_VARIABLE, "")
    if len(pepper) < MIN_PEPPER_LENGTH:
        raise SettingsError(
            f"{PEPPER_VARIABLE} is {'too short' if pepper else 'not set'}: set it to a secret of at least "
            f"{MIN_PEPPER_LENGTH} characters (the same on every gateway and for this command)"
        )
    return pepper


def key_digest(pepper: str, plaintext: str) -> str:
    """HMAC-SHA256 of ``plaintext`` under ``pepper``, hex: what is stored and looked up."""
    return hmac.new(pepper.encode(), plaintext.encode(), hashlib.sha256).hexdigest()


def check_scopes(scopes: Sequence[str]) -> frozenset[str]:
    """The scopes as a set.

    Raises:
        UnknownScope: one is not in :data:`SCOPES`, or there is none.
    """
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise UnknownScope(f"unknown scope(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(SCOPES)}")
    return frozenset(scopes)


def issue_key(
    engine: Engine,
    name: str,
    scopes: Sequence[str],
    *,
    pepper: str | None = None,
    rate_per_s: float | None = None,
    burst: int | None = None,
) -> str:
    """Creates a key for ``name`` with ``scopes`` and returns its plaintext, the only time it exists.

    ``pepper`` defaults to ``BUNDLEWISE_API_KEY_PEPPER``; ``rate_per_s`` and ``burst`` override the
    gateway's default rate limit for this key.

    Raises:
        UnknownScope: a scope is not one of :data:`SCOPES`.
        SettingsError: no pepper given and none in the environment.
        ValueError: ``name`` is empty, or the rate or burst is not positive.
    """
    granted = check_scopes(scopes)
    if not name.strip():
        raise ValueError("a key needs a name saying who holds it")
    if (rate_per_s is not None and rate_per_s <= 0) or (burst is not None and burst < 1):
        raise ValueError("rate_per_s must be > 0 and burst >= 1")
    pepper = pepper if pepper is not None else pepper_from_environment()
    key_id = secrets.token_hex(6)
    plaintext = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    with engine.begin() as conn:
        conn.execute(
            insert(tables.api_keys).values(
                key_id=key_id,
                name=name.strip(),
                key_hash=key_digest(pepper, plaintext),
                scopes=sorted(granted),
                rate_per_s=rate_per_s,
                burst=burst,
            )
        )
    return plaintext


def find_key(engine: Engine, digest: str) -> StoredKey | None:
    """The key whose :func:`key_digest` is ``digest``, revoked or not; None when there is none."""
    with engine.connect() as conn:
        row = conn.execute(select(tables.api_keys).where(tables.api_keys.c.key_hash == digest)).mappings().first()
    return None if row is None else _stored(row)


def list_keys(engine: Engine) -> list[StoredKey]:
    """Every key, oldest first, revoked ones included."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(tables.api_keys).order_by(tables.api_keys.c.created_at, tables.api_keys.c.key_id)
        ).mappings()
        return [_stored(row) for row in rows]


def revoke_key(engine: Engine, key_id: str) -> bool:
    """Revokes ``key_id``; False when no valid key has that id (unknown or already revoked).

    Gateways stop accepting it once their cache of verified keys expires (``api_key_cache_s``).
    """
    with engine.begin() as conn:
        result = conn.execute(
            update(tables.api_keys)
            .where(tables.api_keys.c.key_id == key_id, tables.api_keys.c.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
    return bool(result.rowcount)


def _stored(row: RowMapping) -> StoredKey:
    return StoredKey(
        key_id=row["key_id"],
        name=row["name"],
        scopes=frozenset(row["scopes"]),
        rate_per_s=row["rate_per_s"],
        burst=row["burst"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


# --- bin/bundlewise api-key ------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bundlewise api-key",
        description="Create, list and revoke the gateway's API keys (in BUNDLEWISE_NAMESPACE's PostgreSQL schema).",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--namespace", help="PostgreSQL schema of the keys (default: BUNDLEWISE_NAMESPACE or live)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", parents=[common], help="issue a key; its plaintext is printed once")
    create.add_argument("--name", required=True, help="who holds it, e.g. storefront")
    create.add_argument("--scope", action="append", required=True, choices=SCOPES, help="repeat for several scopes")
    create.add_argument("--rate", type=float, help="requests per second (default: the gateway's setting)")
    create.add_argument("--burst", type=int, help="requests at once (default: the gateway's setting)")
    commands.add_parser("list", parents=[common], help="every key: id, name, scopes, limits, created, revoked")
    revoke = commands.add_parser("revoke", parents=[common], help="revoke a key by its id (the part after bwk_)")
    revoke.add_argument("key_id")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(PostgresSettings)
        pepper = pepper_from_environment() if args.command == "create" else ""
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    engine = make_engine(settings.postgres_url, args.namespace or settings.namespace, pool_size=1)
    try:
        if args.command == "create":
            try:
                plaintext = issue_key(
                    engine, args.name, args.scope, pepper=pepper, rate_per_s=args.rate, burst=args.burst
                )
            except ValueError as exc:
                print(exc, file=sys.stderr)
                return 2
            print(plaintext)
            print("store this key now: it is shown only once (send it as Authorization: Bearer <key>)", file=sys.stderr)
            return 0
        if args.command == "list":
            for key in list_keys(engine):
                rate = f"{key.rate_per_s:g}/s" if key.rate_per_s else "default rate"
                burst = f"burst {key.burst}" if key.burst else "default burst"
                state = f"revoked {key.revoked_at.isoformat(timespec='seconds')}" if key.revoked_at else "valid"
                print(
                    f"{key.key_id}\t{key.name}\t{','.join(sorted(key.scopes))}\t{rate}, {burst}\t"
                    f"created {key.created_at.isoformat(timespec='seconds')}\t{state}"
                )
            return 0
        if revoke_key(engine, args.key_id):
            print(f"revoked {args.key_id}; gateways refuse it once their key cache expires")
            return 0
        print(f"no valid key {args.key_id}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
