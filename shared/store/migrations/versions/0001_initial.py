"""The initial layout: catalogs, items, users, bundles, events, model and policy versions.

Frozen: later changes to shared/store/tables.py come as new revisions, never edits here.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bundle_items",
        sa.Column("catalog_id", sa.String(length=64), nullable=False),
        sa.Column("bundle_id", sa.String(length=128), nullable=False),
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("catalog_id", "bundle_id", "item_id"),
    )
    op.create_index("ix_bundle_items_item", "bundle_items", ["catalog_id", "item_id"], unique=False)
    op.create_table(
        "bundles",
        sa.Column("catalog_id", sa.String(length=64), nullable=False),
        sa.Column("bundle_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("discounted_price", sa.Float(), nullable=True),
        sa.Column("source", sa.String(length=16), server_default="catalog", nullable=False),
        sa.Column("attributes", postgresql.JSONB(astext_type=Text()), server_default="{}", nullable=False),
        sa.Column("retired", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("catalog_id", "bundle_id"),
    )
    op.create_table(
        "catalogs",
        sa.Column("catalog_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=True),
        sa.Column("source", sa.Text(), nullable=False, comment="Where the catalog came from, e.g. a dataset path."),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("catalog_id"),
    )
    op.create_table(
        "events",
        sa.Column("catalog_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("session_id", sa.String(length=128), nullable=True),
        sa.Column("item_id", sa.String(length=128), nullable=True),
        sa.Column("bundle_id", sa.String(length=128), nullable=True),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("kafka_topic", sa.String(length=249), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.PrimaryKeyConstraint("catalog_id", "event_id"),
    )
    op.create_index("ix_events_apply_order", "events", ["kafka_topic", "kafka_partition", "kafka_offset"], unique=False)
    op.create_index("ix_events_user", "events", ["catalog_id", "user_id"], unique=False)
    op.create_table(
        "items",
        sa.Column("catalog_id", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("title", sa.Text(), server_default="", nullable=False),
        sa.Column("category_path", postgresql.ARRAY(Text()), server_default="{}", nullable=False),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("image_url", sa.Text(), server_default="", nullable=False),
        sa.Column("attributes", postgresql.JSONB(astext_type=Text()), server_default="{}", nullable=False),
        sa.Column("retired", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("first_seen_in_event", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("catalog_id", "item_id"),
    )
    op.create_table(
        "model_versions",
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("catalog_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("artifact_uri", sa.Text(), nullable=False),
        sa.Column("metrics", postgresql.JSONB(astext_type=Text()), server_default="{}", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("model_name", "catalog_id", "version"),
    )
    op.create_table(
        "policy_versions",
        sa.Column("catalog_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("policy_name", sa.String(length=64), nullable=False),
        sa.Column("params", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("catalog_id", "version"),
    )
    op.create_table(
        "users",
        sa.Column("catalog_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("catalog_id", "user_id"),
    )


def downgrade() -> None:
    op.drop_table("users")
    op.drop_table("policy_versions")
    op.drop_table("model_versions")
    op.drop_table("items")
    op.drop_index("ix_events_user", table_name="events")
    op.drop_index("ix_events_apply_order", table_name="events")
    op.drop_table("events")
    op.drop_table("catalogs")
    op.drop_table("bundles")
    op.drop_index("ix_bundle_items_item", table_name="bundle_items")
    op.drop_table("bundle_items")
