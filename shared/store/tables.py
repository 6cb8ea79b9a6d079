"""PostgreSQL tables, declared once with SQLAlchemy Core. Alembic migrations create them.

Every table carries ``catalog_id``: one deployment serves several catalogs side by side. A namespace
(``live``, or a replay's own) is a PostgreSQL schema holding all of these tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData()

ID = String(128)

catalogs = Table(
    "catalogs",
    metadata,
    Column("catalog_id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("currency", String(8)),
    Column("source", Text, nullable=False, comment="Where the catalog came from, e.g. a dataset path."),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

items = Table(
    "items",
    metadata,
    Column("catalog_id", String(64), nullable=False),
    Column("item_id", ID, nullable=False),
    Column("title", Text, nullable=False, server_default=""),
    Column("category_path", ARRAY(Text), nullable=False, server_default="{}"),
    Column("price", Float),
    Column("image_url", Text, nullable=False, server_default=""),
    Column("attributes", JSONB, nullable=False, server_default="{}"),
    Column("retired", Boolean, nullable=False, server_default="false"),
    Column("first_seen_in_event", Boolean, nullable=False, server_default="false"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("catalog_id", "item_id"),
)

users = Table(
    "users",
    metadata,
    Column("catalog_id", String(64), nullable=False),
    Column("user_id", ID, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("catalog_id", "user_id"),
)

bundles = Table(
    "bundles",
    metadata,
    Column("catalog_id", String(64), nullable=False),
    Column("bundle_id", ID, nullable=False),
    Column("name", Text, nullable=False, server_default=""),
    Column("price", Float),
    Column("discounted_price", Float),
    Column("source", String(16), nullable=False, server_default="catalog"),
    Column("attributes", JSONB, nullable=False, server_default="{}"),
    Column("retired", Boolean, nullable=False, server_default="false"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("catalog_id", "bundle_id"),
)

bundle_items = Table(
    "bundle_items",
    metadata,
    Column("catalog_id", String(64), nullable=False),
    Column("bundle_id", ID, nullable=False),
    Column("item_id", ID, nullable=False),
    Column("position", Integer, nullable=False),
    PrimaryKeyConstraint("catalog_id", "bundle_id", "item_id"),
    Index("ix_bundle_items_item", "catalog_id", "item_id"),
)

# Every accepted event, once: the primary key is the client-minted event id. The Kafka partition and
# offset of its first delivery decide which delivery applies it to Redis (see feature_updates).
events = Table(
    "events",
    metadata,
    Column("catalog_id", String(64), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("user_id", ID, nullable=False),
    Column("session_id", ID),
    Column("item_id", ID),
    Column("bundle_id", ID),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("ingested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("kafka_topic", String(249), nullable=False),
    Column("kafka_partition", Integer, nullable=False),
    Column("kafka_offset", BigInteger, nullable=False),
    Column("payload", JSONB, nullable=False),
    PrimaryKeyConstraint("catalog_id", "event_id"),
    Index("ix_events_apply_order", "kafka_topic", "kafka_partition", "kafka_offset"),
    Index("ix_events_user", "catalog_id", "user_id"),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("model_name", String(64), nullable=False),
    Column("catalog_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("metrics", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("model_name", "catalog_id", "version"),
)

policy_versions = Table(
    "policy_versions",
    metadata,
    Column("catalog_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("policy_name", String(64), nullable=False),
    Column("params", JSONB, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("catalog_id", "version"),
)

# Shoppers deleted on request (shared.store.privacy). Only a digest of the user id is kept: enough to
# recognise their events in Kafka, so that replays leave them out, and not enough to list who they were.
privacy_denylist = Table(
    "privacy_denylist",
    metadata,
    Column("catalog_id", String(64), nullable=False),
    Column("user_digest", String(64), nullable=False, comment="sha256 of the user id, hex."),
    Column(
        "erasure_id",
        String(36),
        nullable=False,
        comment="The latest erasure; a retried erasure with the same id is applied to Redis once.",
    ),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column(
        "completed_at",
        DateTime(timezone=True),
        comment="When the erasure finished; NULL while it is pending. Replays skip the user's events "
        "written to Kafka up to this time (all of them while pending).",
    ),
    Column("events_deleted", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("catalog_id", "user_digest"),
)

# API keys of the gateway (shared.store.api_keys). Only an HMAC of each key is kept, peppered with a
# secret that lives outside the database, so a copy of this table cannot be used to call the API.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True, comment="The public part of the key, shown in listings."),
    Column("name", Text, nullable=False, comment="Who holds it, e.g. storefront."),
    Column("key_hash", String(64), nullable=False, unique=True, comment="HMAC-SHA256 of the key, hex."),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("rate_per_s", Float, comment="Sustained requests per second; NULL: the gateway's default."),
    Column("burst", Integer, comment="Requests allowed at once; NULL: the gateway's default."),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True), comment="NULL while the key is valid."),
)
