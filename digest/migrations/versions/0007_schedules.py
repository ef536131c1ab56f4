"""Each reader's delivery time (zone, hour, daily or weekly, paused until), when each
ledger row is due, and the edition's SendGrid batch id.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscribers", sa.Column("timezone", sa.String(64)))
    op.add_column("subscribers", sa.Column("delivery_hour", sa.Integer))
    op.add_column("subscribers", sa.Column("cadence", sa.String(10), nullable=False, server_default="daily"))
    op.add_column("subscribers", sa.Column("weekday", sa.Integer))
    op.add_column("subscribers", sa.Column("paused_until", sa.String(10)))
    op.add_column("ledger", sa.Column("send_at", sa.DateTime))
    op.add_column("editions", sa.Column("batch_id", sa.String(100)))


def downgrade() -> None:
    with op.batch_alter_table("editions") as batch:
        batch.drop_column("batch_id")
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("send_at")
    with op.batch_alter_table("subscribers") as batch:
        for name in ("paused_until", "weekday", "cadence", "delivery_hour", "timezone"):
            batch.drop_column(name)
