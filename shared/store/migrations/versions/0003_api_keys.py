"""API keys of the gateway, stored as peppered HMACs (see shared/store/api_keys.py).

Frozen: later changes come as new revisions.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column(
            "key_id", sa.String(length=32), nullable=False, comment="The public part of the key, shown in listings."
        ),
        sa.Column("name", sa.Text(), nullable=False, comment="Who holds it, e.g. storefront."),
        sa.Column("key_hash", sa.String(length=64), nullable=False, comment="HMAC-SHA256 of the key, hex."),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column(
            "rate_per_s",
            sa.Float(),
            nullable=True,
            comment="Sustained requests per second; NULL: the gateway's default.",
        ),
        sa.Column(
            "burst", sa.Integer(), nullable=True, comment="Requests allowed at once; NULL: the gateway's default."
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True, comment="NULL while the key is valid."),
        sa.PrimaryKeyConstraint("key_id"),
        sa.UniqueConstraint("key_hash"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
