"""A store made by the previous release (revision 0002, kept as tests/fixtures/store-0002.db)
upgrades in place with nothing lost: made by that release's CLI from the sample data, one
edition sent, one subscriber unsubscribed, one row left `unknown` by a killed run (whose
claim has no lease), one webhook event."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from digest.deliver import ledger
from digest.store import head_revision, open_store

pytestmark = pytest.mark.sqlite_only  # the fixture is a SQLite file

FIXTURE = Path(__file__).parent / "fixtures" / "store-0002.db"
TABLES = ("articles", "subscribers", "editions", "ledger", "webhook_events")


def rows_of(path: Path, table: str) -> list[dict]:
    with closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY 1")]


@pytest.fixture
def old_store(tmp_path) -> Path:
    path = tmp_path / "digest.db"
    shutil.copy(FIXTURE, path)
    return path


def test_the_previous_release_store_upgrades_with_nothing_lost(old_store):
    before = {t: rows_of(old_store, t) for t in TABLES}
    assert before["ledger"] and before["webhook_events"] and len(before["subscribers"]) == 8
    engine = open_store(f"sqlite:///{old_store}")
    after = {t: rows_of(old_store, t) for t in TABLES}
    for table in TABLES:  # every value of every column both revisions have
        common = set(before[table][0]) & set(after[table][0])
        assert [{k: row[k] for k in common} for row in after[table]] == \
               [{k: row[k] for k in common} for row in before[table]], table
    assert {r["lease_until"] for r in after["ledger"]} == {None}
    assert {r["withdrawn"] for r in after["articles"]} == {0}  # every story stays in its edition
    with closing(sqlite3.connect(old_store)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
    # The row a killed run of that release left behind: unknown, no lease, so a problem to
    # report and a row `--retry unknown` may take.
    report = ledger.report(engine, "2026-11-25")
    assert report["counts"] == {"pending": 0, "sent": 6, "failed": 0, "unknown": 1}
    assert len(report["problems"]) == 1 and "in_flight" not in report
    assert ledger.requeue(engine, "2026-11-25", "unknown") == 1
    engine.dispose()


def test_the_previous_release_store_works_through_the_cli(old_store, run_digest):
    result = run_digest("status", "--date", "2026-11-25")
    assert result.returncode == 1 and "6 sent" in result.stdout and "1 unknown" in result.stdout, result.stderr
    assert "Traceback" not in result.stderr
    assert run_digest("db", "current").stdout == f"{head_revision()} (head)\n"
