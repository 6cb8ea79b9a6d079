"""The privacy deny-list: shoppers deleted on request, by digest (see shared/store/privacy.py).

Frozen: later changes come as new revisions.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "privacy_denylist",
        sa.Column("catalog_id", sa.String(length=64), nullable=False),
        sa.Column("user_digest", sa.String(length=64), nullable=False, comment="sha256 of the user id, hex."),
        sa.Column(
            "erasure_id",
            sa.String(length=36),
            nullable=False,
            comment="The latest erasure; a retried erasure with the same id is applied to Redis once.",
        ),
        sa.Column("requested_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column(
            "completed_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="When the erasure finished; NULL while it is pending. Replays skip the user's events "
            "written to Kafka up to this time (all of them while pending).",
        ),
        sa.Column("events_deleted", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("catalog_id", "user_digest"),
    )


def downgrade() -> None:
    op.drop_table("privacy_denylist")
