"""The schema as it was at version 1 of the old hand-rolled scheme (commit 4896824).

Sections are JSON lists of names, in subscribers and ledger alike.  A store made by the
old scheme at version 1 is stamped at this revision (digest.store.migrate), not rebuilt.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written out, not taken from digest.store.metadata: this revision must keep creating
    # the version-1 schema whatever today's metadata says.
    op.create_table(
        "articles",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("question", sa.Text),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("published", sa.DateTime, nullable=False),
        sa.Column("sections", sa.JSON, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("featured", sa.Boolean, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("image", sa.Text),
        sa.Column("image_alt", sa.Text),
        sa.Column("source", sa.Text),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_articles_published", "articles", ["published"])
    op.create_table(
        "editions",
        sa.Column("date", sa.String(10), primary_key=True),
        sa.Column("frozen_at", sa.DateTime, nullable=False),
        sa.Column("articles", sa.JSON, nullable=False),
        sa.Column("sender", sa.String(200)),
        sa.Column("sender_seen", sa.DateTime),
    )
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("sections", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_reason", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        # Ids are never reused (links in old emails name a subscriber by id).
        sqlite_autoincrement=True,
    )
    op.create_table(
        "webhook_events",
        sa.Column("sg_event_id", sa.String(200), primary_key=True),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("received_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("edition", sa.String(10), sa.ForeignKey("editions.date"), nullable=False),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("sections", sa.JSON, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("message_id", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("claim", sa.String(40)),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("edition", "subscriber_id", name="uq_ledger_edition_subscriber"),
    )


def downgrade() -> None:
    for table in ("ledger", "webhook_events", "subscribers", "editions", "articles"):
        op.drop_table(table)
