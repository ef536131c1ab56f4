import pytest
from sqlalchemy import make_url, text

from digest.store import StoreError, head_revision, journal_mode, open_store
from tests import stores
from tests.stores import rows, store_url


@pytest.mark.sqlite_only
def test_schema_created_versioned_and_wal(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head_revision()
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() >= 5000
    assert journal_mode(engine) == "wal"
    open_store(f"sqlite:///{tmp_path / 'd.db'}")  # reopening migrates nothing and fails nothing


def test_newer_schema_is_refused(tmp_path):
    url = store_url(tmp_path / "d.db")
    engine = open_store(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'a_later_revision'"))
    with pytest.raises(StoreError, match="newer"):
        open_store(url)


def test_foreign_database_is_refused(tmp_path):
    url = store_url(tmp_path / "other.db")
    rows(url, "create table t (x integer)")
    with pytest.raises(StoreError, match="not a news-digest store"):
        open_store(url)


def test_unusable_url_exits_2(cli):
    result = cli("subscribers", "list", env={"DIGEST_DATABASE_URL": "nosuchdb://x"})
    assert result.exit_code == 2 and "database URL" in result.stderr


@pytest.mark.parametrize("command", [
    ("subscribers", "add", "new@example.com"),
    ("subscribers", "update", "jo@example.com", "--name", "Joanna"),
    ("subscribers", "unsubscribe", "jo@example.com"),
    ("subscribers", "remove", "jo@example.com"),
    ("articles", "import", "stories"),
])
def test_a_busy_database_is_one_clear_line_and_exit_2(cli, workdir, write_lock, command):
    from tests.conftest import write_article
    write_article(workdir / "stories", "a-story")
    assert cli("subscribers", "add", "jo@example.com").exit_code == 0
    write_lock()
    result = cli(*command)
    assert result.exit_code == 2, result.output
    assert result.stderr == ("error: the database is busy (another process holds its write lock); "
                             "nothing was changed, try again\n")


@pytest.mark.postgres_only
def test_a_missing_postgres_database_named_locked_is_not_called_busy(cli):
    """PostgreSQL's errors are told apart by SQLSTATE, not by words in the message: a
    database called "locked_out" that does not exist is that error, not a busy database."""
    url = make_url(stores.POSTGRES).set(database="locked_out").render_as_string(hide_password=False)
    result = cli("subscribers", "list", env={"DIGEST_DATABASE_URL": url})
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert 'database "locked_out" does not exist' in result.stderr and "busy" not in result.stderr
