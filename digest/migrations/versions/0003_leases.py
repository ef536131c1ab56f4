"""Several senders: claimed rows carry a lease; the one-sender lock on editions goes.

A sender claims rows by writing its name (host:pid:id, at most 40 characters) into `claim`
and a time into `lease_until`, and
renews the lease while it works.  Rows claimed before this revision have no lease: they
count as expired (reported unknown, never resent by themselves), as they were before.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD/DROP COLUMN (SQLite >= 3.35 has both), not a batch copy of the biggest table.
    op.add_column("ledger", sa.Column("lease_until", sa.DateTime))
    op.drop_column("editions", "sender")
    op.drop_column("editions", "sender_seen")


def downgrade() -> None:
    op.add_column("editions", sa.Column("sender", sa.String(200)))
    op.add_column("editions", sa.Column("sender_seen", sa.DateTime))
    op.drop_column("ledger", "lease_until")
