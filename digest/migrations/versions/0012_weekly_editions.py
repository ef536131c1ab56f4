"""The weekly edition: edition keys grow from a day (2026-11-25) to weekly-2026-11-25, so
editions.date and ledger.edition widen to 20 characters (PostgreSQL enforces lengths;
SQLite does not: there the revision changes nothing).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _widen(old: int, new: int) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # SQLite ignores lengths, and rebuilding `editions` (batch mode) would drop a table
        # the ledger's rows reference, which its foreign keys refuse.  A declared length is
        # only text in the schema (nothing on disk changes), so the schema text is edited,
        # as SQLite's ALTER TABLE documentation allows for such changes, and its
        # schema_version bumped so every connection rereads it.
        bind.exec_driver_sql("PRAGMA writable_schema=ON")
        for table, name in (("editions", "date"), ("ledger", "edition")):
            bind.exec_driver_sql("UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = ?",
                                 (f"{name} VARCHAR({old})", f"{name} VARCHAR({new})", table))
        version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
        bind.exec_driver_sql(f"PRAGMA schema_version={int(version) + 1}")
        bind.exec_driver_sql("PRAGMA writable_schema=OFF")
        return
    # ledger.edition references editions.date; widening a varchar keeps the key valid.
    op.alter_column("editions", "date", type_=sa.String(new), existing_type=sa.String(old), existing_nullable=False)
    op.alter_column("ledger", "edition", type_=sa.String(new), existing_type=sa.String(old), existing_nullable=False)


def upgrade() -> None:
    _widen(10, 20)


def downgrade() -> None:
    # Weekly editions' keys do not fit the old width: they go first (their rows with them).
    op.execute("DELETE FROM ledger WHERE edition LIKE 'weekly-%'")
    op.execute("DELETE FROM editions WHERE date LIKE 'weekly-%'")
    _widen(20, 10)
