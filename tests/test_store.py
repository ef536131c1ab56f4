from sqlalchemy import select, text

from digest.store import SCHEMA_VERSION, StoreError, journal_mode, open_store, schema_version

import pytest


def test_schema_created_versioned_and_wal(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with engine.connect() as conn:
        assert conn.execute(select(schema_version.c.version)).scalar_one() == SCHEMA_VERSION
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() >= 5000
    assert journal_mode(engine) == "wal"
    open_store(f"sqlite:///{tmp_path / 'd.db'}")  # reopening migrates nothing and fails nothing


def test_newer_schema_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.db'}"
    engine = open_store(url)
    with engine.begin() as conn:
        conn.execute(schema_version.update().values(version=SCHEMA_VERSION + 1))
    with pytest.raises(StoreError, match="newer"):
        open_store(url)


def test_foreign_database_is_refused(tmp_path):
    import sqlite3
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("create table t (x)").connection.commit()
    with pytest.raises(StoreError, match="not a news-digest store"):
        open_store(f"sqlite:///{path}")


def test_unusable_url_exits_2(cli):
    result = cli("subscribers", "list", env={"DIGEST_DATABASE_URL": "nosuchdb://x"})
    assert result.exit_code == 2 and "database URL" in result.stderr
