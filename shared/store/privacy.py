"""Deleting a shopper on request: their rows, their Redis keys, their share of every aggregate.

``delete_user`` removes the user's ``users`` row and ``events`` rows from PostgreSQL, deletes their
personal Redis keys (recent items, category affinity, bought bundles, looks at and clicks on bundles,
the baskets of their sessions)
and takes their contribution out of the shared aggregates (item popularity, co-occurrence, bundle
statistics and popularity). The contribution is recomputed from the rows being deleted with the same
effect code live ingestion applies (:func:`shared.store.feature_updates.redis_ops`), so afterwards
Redis equals a rebuild from the remaining rows. Baskets are simulated session by session, with and
without the user's events, because a pair counts once per basket and baskets are capped.

The user is then recorded in ``privacy_denylist`` by a digest of their id, and replays leave their
raw Kafka events out of their outputs (:class:`DenyList`). See ``docs/privacy.md`` for the argument
and the limits.

Crash safety: the erasure gets an id that is committed before anything is deleted. The Redis step is
one Lua script that records that id, so a retry after a crash between the Redis step and the
PostgreSQL commit does not subtract twice; a crash before the Redis step changed nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import redis
import sqlalchemy.exc
from sqlalchemy import Connection, Engine, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from shared.events import EVENT_ADAPTER, Event
from shared.log import configure_logging, pseudonymise
from shared.settings import PostgresSettings, RedisSettings, SettingsError, load_settings
from shared.store import tables
from shared.store.feature_updates import BASKET_EVENTS, redis_ops
from shared.store.migrate import make_engine
from shared.store.redis_keys import CatalogKeys, NamespaceKeys

log = logging.getLogger(__name__)

# Applies an ErasurePlan atomically, once per erasure id (KEYS[1]: the erasures hash).
ERASE_SCRIPT = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return {0, 0}
end
local plan = cjson.decode(ARGV[3])
for _, z in ipairs(plan.zsets) do
  local left = tonumber(redis.call('ZINCRBY', z[1], -z[3], z[2]))
  if left <= 0 then
    redis.call('ZREM', z[1], z[2])
  end
end
for _, h in ipairs(plan.hashes) do
  local left = redis.call('HINCRBY', h[1], h[2], -h[3])
  if left <= 0 then
    redis.call('HDEL', h[1], h[2])
  end
end
local deleted = 0
for _, key in ipairs(plan.delete) do
  deleted = deleted + redis.call('DEL', key)
end
for _, session in ipairs(plan.sessions) do
  deleted = deleted + redis.call('DEL', session[1])
  for _, member in ipairs(session[2]) do
    redis.call('ZADD', session[1], member[2], member[1])
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {1, deleted}
"""


class ErasureUnsupported(RuntimeError):
    """An event has a Redis effect this module does not know how to undo; nothing was deleted."""


def user_digest(user_id: str) -> str:
    """What the deny-list keeps instead of the user id: its sha256, hex."""
    return hashlib.sha256(user_id.encode()).hexdigest()


# --- the plan: pure, no I/O ----------------------------------------------------------------------


@dataclass(frozen=True)
class Basket:
    """A session's basket as apply_effects.lua builds it: the pairs it counted and what it holds."""

    pairs: Counter[tuple[str, str]]
    items: dict[str, float]


def simulate_basket(additions: Iterable[tuple[str, float]], cap: int) -> Basket:
    """Replays ``(item, event time)`` basket additions exactly as ``apply_effects.lua`` does.

    A new item pairs with every item in the basket (both directions); an item already there only
    moves to the later time. The basket keeps the ``cap`` latest items (ties broken as Redis orders
    members: by bytes), and an item pushed out no longer pairs with later ones.
    """
    items: dict[str, float] = {}
    pairs: Counter[tuple[str, str]] = Counter()
    for item, ts in additions:
        if item in items:
            items[item] = max(items[item], ts)
            continue
        for other in items:
            pairs[(item, other)] += 1
            pairs[(other, item)] += 1
        items[item] = ts
        if len(items) > cap:
            ranked = sorted(items.items(), key=lambda member: (member[1], member[0].encode()))
            for dropped, _ in ranked[: len(items) - cap]:
                del items[dropped]
    return Basket(pairs, items)


@dataclass(frozen=True)
class SessionRun:
    """Every basket event of one session in apply order, with whether it is the deleted user's."""

    events: Sequence[tuple[Event, bool]]


@dataclass
class ErasurePlan:
    """The Redis changes that remove one user from one catalog.

    ``zsets`` and ``hashes`` map (key, member or field) to the amount to subtract (negative: to add,
    when removing the user lets a capped basket keep an item it used to push out). A member or field
    left at zero or below is removed, as a rebuild would never have created it. ``sessions`` maps
    each basket key the user touched to what remains in it, oldest first (empty: the key goes).
    """

    zsets: Counter[tuple[str, str]] = field(default_factory=Counter)
    hashes: Counter[tuple[str, str]] = field(default_factory=Counter)
    delete: set[str] = field(default_factory=set)
    sessions: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    @property
    def aggregates(self) -> int:
        """How many aggregate members and fields the plan corrects."""
        return sum(1 for n in self.zsets.values() if n) + sum(1 for n in self.hashes.values() if n)

    def to_json(self) -> str:
        return json.dumps(
            {
                "zsets": [[k, m, n] for (k, m), n in sorted(self.zsets.items()) if n],
                "hashes": [[k, f, n] for (k, f), n in sorted(self.hashes.items()) if n],
                "delete": sorted(self.delete),
                "sessions": [[k, [[m, s] for m, s in members]] for k, members in sorted(self.sessions.items())],
            }
        )


def personal_keys(keys: CatalogKeys, user_id: str) -> set[str]:
    """The Redis keys that belong to one user alone (their sessions' baskets aside: shared with others)."""
    return {
        keys.user_recent_items(user_id),
        keys.user_categories(user_id),
        keys.user_bundles(user_id),
        keys.user_bundle_looks(user_id),
        keys.user_bundle_clicks(user_id),
    }


def plan_erasure(
    user_id: str, user_events: Iterable[Event], sessions: Mapping[str, SessionRun], keys: CatalogKeys
) -> ErasurePlan:
    """What to change in Redis so that it holds nothing of ``user_id``'s events.

    ``user_events`` are every event of the user in the catalog; ``sessions`` maps each session id
    in which the user added to a basket to that session's basket events (everyone's) in apply order.

    Raises:
        ErasureUnsupported: an effect kind, or an effect on a key shared with others, that this
            function cannot undo (a new feature in feature_updates must be taught here first).
    """
    plan = ErasurePlan(delete=personal_keys(keys, user_id))
    for event in user_events:
        for op in redis_ops(event, keys):
            kind = op[0]
            if kind == "zincr":
                plan.zsets[(op[1], op[3])] += op[2]
            elif kind == "hincr":
                plan.hashes[(op[1], op[2])] += op[3]
            elif kind in {"recent", "sadd", "affinity", "hincrfloat"}:
                personal = op[2] if kind == "affinity" else op[1]
                if personal not in plan.delete:
                    raise ErasureUnsupported(f"effect {kind!r} writes a key that is not the user's own")
            elif kind != "basket":  # baskets are undone session by session below
                raise ErasureUnsupported(f"unknown effect {kind!r}: teach shared.store.privacy to undo it")
    for run in sessions.values():
        _plan_session(run, keys, plan)
    return plan


def _plan_session(run: SessionRun, keys: CatalogKeys, plan: ErasurePlan) -> None:
    with_user: list[tuple[str, float]] = []
    without_user: list[tuple[str, float]] = []
    session_key, neighbours_prefix, cap = "", "", 0
    for event, is_users in run.events:
        for op in redis_ops(event, keys):
            if op[0] != "basket":
                continue
            _, session_key, item, ts, neighbours_prefix, cap = op
            with_user.append((item, ts))
            if not is_users:
                without_user.append((item, ts))
    if not session_key:
        return
    before, after = simulate_basket(with_user, cap), simulate_basket(without_user, cap)
    for pair in before.pairs.keys() | after.pairs.keys():
        change = before.pairs[pair] - after.pairs[pair]
        if change:
            plan.zsets[(neighbours_prefix + pair[0], pair[1])] += change
    plan.sessions[session_key] = sorted(after.items.items(), key=lambda member: (member[1], member[0].encode()))


# --- the deny-list -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DenyList:
    """Users deleted on request, whose raw Kafka events replays must leave out.

    ``cutoffs`` maps (catalog id, user digest) to the end of the erasure in epoch milliseconds, or
    None while it is pending. Events written to Kafka up to the cutoff are the deleted user's; what a
    returning shopper sends afterwards is new data and passes.
    """

    cutoffs: Mapping[tuple[str, str], int | None] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.cutoffs)

    def blocks(self, catalog_id: str, user_id: str, kafka_timestamp_ms: int) -> bool:
        """Whether an event of ``user_id`` written to Kafka at ``kafka_timestamp_ms`` must be left out."""
        if not self.cutoffs:
            return False
        key = (catalog_id, user_digest(user_id))
        if key not in self.cutoffs:
            return False
        cutoff = self.cutoffs[key]
        return cutoff is None or kafka_timestamp_ms <= cutoff


class DenyListUnavailable(RuntimeError):
    """The namespace has no deny-list table (it was not migrated); replaying could leak deleted users."""


def load_denylist(engine: Engine) -> DenyList:
    """The deny-list of the engine's namespace.

    Raises:
        DenyListUnavailable: the table does not exist (run ``bundlewise migrate``).
    """
    d = tables.privacy_denylist.c
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(d.catalog_id, d.user_digest, d.completed_at)).all()
    except sqlalchemy.exc.ProgrammingError as exc:
        raise DenyListUnavailable(
            f"no privacy_denylist table ({type(exc.orig).__name__}); migrate the namespace (bundlewise migrate)"
        ) from None
    return DenyList({(c, u): None if done is None else int(done.timestamp() * 1000) for c, u, done in rows})


# --- the erasure ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErasureReport:
    """What one ``delete_user`` did; ``redis_already_done`` is set when a retry found Redis erased."""

    catalog_id: str
    events_deleted: int
    user_row_deleted: bool
    keys_deleted: int
    aggregates_adjusted: int
    redis_already_done: bool


def delete_user(
    engine: Engine, redis_client: redis.Redis, namespace: str, catalog_id: str, user_id: str
) -> ErasureReport:
    """Deletes ``user_id``'s personal data from ``catalog_id`` in ``namespace`` and deny-lists them.

    Idempotent: deleting a user twice, or again after a crash, leaves the same state. A user who
    never sent an event is still deny-listed. Events of the user that ingestion writes while this
    runs may survive it (see docs/privacy.md); deleting again removes them.

    Raises:
        ErasureUnsupported: an event of the user has an effect that cannot be undone yet; nothing was
            deleted, and the user stays deny-listed as pending.
        sqlalchemy.exc.OperationalError, redis.ConnectionError: a store is down; retry.
    """
    digest = user_digest(user_id)
    keys = NamespaceKeys(namespace).catalog(catalog_id)
    erasure_id = _begin_erasure(engine, catalog_id, digest)
    e = tables.events.c
    with engine.begin() as conn:
        rows = conn.execute(
            select(e.event_id, e.payload)
            .where(e.catalog_id == catalog_id, e.user_id == user_id)
            .order_by(e.kafka_topic, e.kafka_partition, e.kafka_offset)
            .with_for_update()
        ).all()
        user_events = [EVENT_ADAPTER.validate_python(payload) for _, payload in rows]
        session_ids = sorted(
            {ev.session_id for ev in user_events if ev.session_id is not None and ev.type in BASKET_EVENTS}
        )
        plan = plan_erasure(user_id, user_events, _session_runs(conn, catalog_id, session_ids, user_id), keys)
        applied, keys_deleted = redis_client.register_script(ERASE_SCRIPT)(
            keys=[keys.privacy_erasures()], args=[digest, erasure_id, plan.to_json()]
        )
        event_ids = [event_id for event_id, _ in rows]
        for start in range(0, len(event_ids), 1000):
            conn.execute(
                delete(tables.events).where(e.catalog_id == catalog_id, e.event_id.in_(event_ids[start : start + 1000]))
            )
        user_rows = conn.execute(
            delete(tables.users).where(tables.users.c.catalog_id == catalog_id, tables.users.c.user_id == user_id)
        ).rowcount
        d = tables.privacy_denylist.c
        conn.execute(
            update(tables.privacy_denylist)
            .where(d.catalog_id == catalog_id, d.user_digest == digest, d.erasure_id == erasure_id)
            .values(completed_at=func.now(), events_deleted=len(rows))
        )
    redis_client.hdel(keys.privacy_erasures(), digest)
    report = ErasureReport(
        catalog_id=catalog_id,
        events_deleted=len(rows),
        user_row_deleted=user_rows > 0,
        keys_deleted=int(keys_deleted),
        aggregates_adjusted=plan.aggregates,
        redis_already_done=not int(applied),
    )
    log.info(
        "erased %s from %s in %s: %d events, %d keys, %d aggregates%s",
        pseudonymise(user_id),
        catalog_id,
        namespace,
        report.events_deleted,
        report.keys_deleted,
        report.aggregates_adjusted,
        " (Redis was already erased by an earlier try)" if report.redis_already_done else "",
    )
    return report


def _begin_erasure(engine: Engine, catalog_id: str, digest: str) -> str:
    """Deny-lists the user as pending and returns the erasure id (an unfinished one is resumed)."""
    d = tables.privacy_denylist.c
    with engine.begin() as conn:
        row = conn.execute(
            select(d.erasure_id, d.completed_at)
            .where(d.catalog_id == catalog_id, d.user_digest == digest)
            .with_for_update()
        ).first()
        if row is not None and row.completed_at is None:
            return str(row.erasure_id)
        erasure_id = str(uuid.uuid4())
        statement = insert(tables.privacy_denylist).values(
            catalog_id=catalog_id, user_digest=digest, erasure_id=erasure_id
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["catalog_id", "user_digest"],
                set_={"erasure_id": erasure_id, "requested_at": func.now(), "completed_at": None, "events_deleted": 0},
            )
        )
    return erasure_id


def _session_runs(conn: Connection, catalog_id: str, session_ids: Sequence[str], user_id: str) -> dict[str, SessionRun]:
    """Every basket event of the given sessions, everyone's, in the order a rebuild applies them."""
    if not session_ids:
        return {}
    e = tables.events.c
    rows = conn.execute(
        select(e.session_id, e.user_id, e.payload)
        .where(e.catalog_id == catalog_id, e.session_id.in_(session_ids), e.event_type.in_(sorted(BASKET_EVENTS)))
        .order_by(e.kafka_topic, e.kafka_partition, e.kafka_offset)
    ).all()
    runs: dict[str, list[tuple[Event, bool]]] = {}
    for session_id, owner, payload in rows:
        runs.setdefault(session_id, []).append((EVENT_ADAPTER.validate_python(payload), owner == user_id))
    return {session_id: SessionRun(events) for session_id, events in runs.items()}


def count_user_events(engine: Engine, catalog_id: str, user_id: str) -> int:
    e = tables.events.c
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(tables.events).where(e.catalog_id == catalog_id, e.user_id == user_id)
            ).scalar_one()
        )


# --- bundlewise delete-user ----------------------------------------------------------------------


class _EraseSettings(PostgresSettings, RedisSettings):
    pass


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bundlewise delete-user",
        description="Deletes a shopper's personal data (PostgreSQL rows, Redis keys, their share of "
        "aggregates) from one catalog and deny-lists them for replays. See docs/privacy.md.",
    )
    parser.add_argument("--catalog", required=True, help="catalog id, e.g. amazon")
    parser.add_argument("--user", required=True, help="the user id as the storefront knows it")
    parser.add_argument("--namespace", help="default: $BUNDLEWISE_NAMESPACE")
    parser.add_argument("--yes", action="store_true", help="delete; without it, only say what would be deleted")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(_EraseSettings)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging("delete-user", "WARNING")
    namespace = args.namespace or settings.namespace
    engine = make_engine(settings.postgres_url, namespace)
    client = redis.Redis.from_url(settings.redis_url)
    who = f"user {pseudonymise(args.user)} of catalog {args.catalog} in namespace {namespace}"
    try:
        if not args.yes:
            count = count_user_events(engine, args.catalog, args.user)
            print(f"would delete {who}: {count} events, their Redis keys and their share of aggregates")
            print("rerun with --yes to delete (it cannot be undone)")
            return 1
        report = delete_user(engine, client, namespace, args.catalog, args.user)
    finally:
        engine.dispose()
        client.close()
    user_row = "deleted" if report.user_row_deleted else "absent"
    print(
        f"deleted {who}: {report.events_deleted} events, user row {user_row}, "
        f"{report.keys_deleted} Redis keys, {report.aggregates_adjusted} aggregate entries corrected; deny-listed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
