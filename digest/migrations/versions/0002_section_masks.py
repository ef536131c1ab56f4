"""Sections as section masks (integers) instead of JSON lists; the send's indexes.

The same conversion as the old scheme's version 2 (`_v1_to_v2`): a stored name that is no
longer one of the site's sections (a retired one) never matched a section, so it is
dropped; [] (the newsletter's defaults) becomes 0.  A store made by the old scheme at
version 2 is stamped at this revision.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _to_mask(raw) -> int:
    # The bits follow the canonical section order of digest.config, as the masks do
    # everywhere else in the program.
    from digest.config import SECTIONS, section_mask

    names = json.loads(raw) if isinstance(raw, str) else (raw or [])
    return section_mask(n for n in names if n in SECTIONS)


def upgrade() -> None:
    conn = op.get_bind()
    for table in ("subscribers", "ledger"):
        # Plain ADD/DROP COLUMN (SQLite >= 3.35 has both), not a batch table copy: a copy
        # of subscribers would reset SQLite's AUTOINCREMENT counter to the highest id left,
        # so an erased subscriber's id could be given out again; and it copies the biggest
        # tables (the ledger) for nothing.
        op.add_column(table, sa.Column("section_mask", sa.Integer, nullable=False, server_default="0"))
        rows = conn.execute(sa.text(f"SELECT id, sections FROM {table}")).all()
        if rows:
            conn.execute(sa.text(f"UPDATE {table} SET section_mask = :m WHERE id = :id"),
                         [{"id": i, "m": _to_mask(raw)} for i, raw in rows])
        op.drop_column(table, "sections")
    # The dry run reads the active audience grouped by section set; the send claims the
    # next chunk of one digest's pending rows with a range scan.
    op.create_index("ix_subscribers_status_mask", "subscribers", ["status", "section_mask", "id"])
    op.create_index("ix_ledger_claim", "ledger", ["edition", "status", "section_mask", "id"])


def downgrade() -> None:
    raise NotImplementedError("section masks cannot be turned back into JSON lists here; restore a backup")
