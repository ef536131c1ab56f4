"""Withdrawn stories, the record of editors' changes to stories, and how many of an
edition's audience left before they were sent (the ledger drops their rows).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("articles", sa.Column("withdrawn", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("editions", sa.Column("withdrawn", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "article_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("article_id", sa.String(200), nullable=False, index=True),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("who", sa.String(320), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("article_changes")
    op.drop_column("editions", "withdrawn")
    op.drop_column("articles", "withdrawn")
