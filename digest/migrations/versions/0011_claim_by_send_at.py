"""Claims take one (digest, send_at) range: ix_ledger_claim gains send_at before id, so a
chunk's rows share one due time (one SendGrid request holds one send_at); and
ix_subscribers_schedule, from which freezing reads the audience's (zone, hour) pairs.

Revision ID: 0011
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_ledger_claim", table_name="ledger")
    op.create_index("ix_ledger_claim", "ledger", ["edition", "status", "section_mask", "send_at", "id"])
    op.create_index("ix_subscribers_schedule", "subscribers",
                    ["status", "cadence", "timezone", "delivery_hour", "paused_until"])


def downgrade() -> None:
    op.drop_index("ix_subscribers_schedule", table_name="subscribers")
    op.drop_index("ix_ledger_claim", table_name="ledger")
    op.create_index("ix_ledger_claim", "ledger", ["edition", "status", "section_mask", "id"])
