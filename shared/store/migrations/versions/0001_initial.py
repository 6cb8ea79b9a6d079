"""The initial layout: catalogs, items, users, bundles, events, model and policy versions.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from shared.store import tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_CREATED = [
    tables.catalogs,
    tables.items,
    tables.users,
    tables.bundles,
    tables.bundle_items,
    tables.events,
    tables.model_versions,
    tables.policy_versions,
]


def upgrade() -> None:
    bind = op.get_bind()
    # The tables are unqualified: they land in the namespace that env.py put on the search_path.
    for table in _CREATED:
        table.create(bind, checkfirst=True)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(_CREATED):
        table.drop(bind, checkfirst=True)
