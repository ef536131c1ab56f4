"""The store's schema under Alembic: new stores, stores of the old hand-rolled scheme
(`schema_version` 1 or 2) adopted in place, a store newer than this program refused, and
`digest db upgrade|current`.  (The version-1 store is tests/test_store_migration.py.)
"""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from digest.config import section_mask
from digest.deliver import ledger
from digest.store import StoreError, head_revision, metadata, normalise_url, open_store, schema_state
from digest.subscribers import store as subscriber_store
from tests.stores import POSTGRES, rows, store_url
from tests.test_store_migration import build_v1, dump

NOW = "2026-11-20 08:00:00.000000"


def revision_of(path) -> list[tuple]:
    return dump(path, "SELECT version_num FROM alembic_version")


def tables_of(path) -> set[str]:
    engine = create_engine(normalise_url(store_url(path)), poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def dump_by_name(path, sql: str) -> list[dict]:
    engine = create_engine(normalise_url(store_url(path)), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def same_columns(rows: list[dict], like: list[dict]) -> list[dict]:
    """`rows` cut to the columns `like` has (a later revision may add or drop some)."""
    keep = set(like[0]) if like else set()
    return [{k: v for k, v in r.items() if k in keep} for r in rows]


def build_v2(path) -> None:
    """A store as the code on main before Alembic made it: `schema_version` 2.

    Its tables are those of revision 0002 (which is what that code's `metadata.create_all`
    made, on either engine: adoption stamps such a store at 0002) plus the old
    `schema_version` table; the rows are written as SQL.
    """
    from alembic import command

    from digest.store import _alembic_config
    url = store_url(path)
    engine = create_engine(normalise_url(url), poolclass=NullPool)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0002")
        conn.execute(text("DROP TABLE alembic_version"))
    engine.dispose()
    rows(url, "CREATE TABLE schema_version (version INTEGER NOT NULL)")
    rows(url, "INSERT INTO schema_version (version) VALUES (2)")
    rows(url, "INSERT INTO editions (date, frozen_at, articles) VALUES ('2026-11-19', :now, '[]')", now=NOW)
    people = [("a@example.com", "A", section_mask(("world", "tech")), "active"),
              ("b@example.com", "B", 0, "paused"),
              ("c@example.com", "C", section_mask(("food",)), "unsubscribed")]
    for email, name, mask, status in people:
        rows(url, "INSERT INTO subscribers (email, email_key, name, section_mask, status, created_at, updated_at) "
                  "VALUES (:email, :email, :name, :mask, :status, :now, :now)",
             email=email, name=name, mask=mask, status=status, now=NOW)
    # An erased subscriber held the highest id: AUTOINCREMENT must not give it out again.
    rows(url, "DELETE FROM subscribers WHERE email = 'c@example.com'")
    rows(url, "INSERT INTO ledger (edition, subscriber_id, email, name, section_mask, status, message_id, attempts, "
              "updated_at) VALUES ('2026-11-19', 1, 'a@example.com', 'A', :mask, 'sent', 'm-1', 1, :now)",
         mask=section_mask(("world", "tech")), now=NOW)
    rows(url, "INSERT INTO ledger (edition, subscriber_id, email, name, section_mask, status, reason, attempts, "
              "updated_at) VALUES ('2026-11-19', 2, 'b@example.com', 'B', 0, 'unknown', 'no answer', 1, :now)", now=NOW)
    rows(url, "INSERT INTO webhook_events VALUES ('ev-1', 'bounce', 'x@example.com', :now)", now=NOW)


def test_a_new_store_is_created_at_head_and_matches_the_metadata(tmp_path):
    path = tmp_path / "new.db"
    engine = open_store(store_url(path))
    assert revision_of(path) == [(head_revision(),)]
    assert "schema_version" not in tables_of(path)
    with engine.connect() as conn:
        # The migrations and digest/store.py's tables describe the same schema.
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


@pytest.mark.sqlite_only
def test_an_in_memory_store_is_migrated_on_its_own_connection():
    engine = open_store("sqlite://")
    with engine.connect() as conn:
        assert {"subscribers", "ledger", "alembic_version"} <= set(inspect(conn).get_table_names())
    assert subscriber_store.add(engine, "m@example.com", "M", ("world",)).id == 1


def test_a_version_2_store_is_adopted_without_data_loss(tmp_path):
    path = tmp_path / "v2.db"
    build_v2(path)
    everything = ["SELECT * FROM subscribers ORDER BY id", "SELECT * FROM ledger ORDER BY id",
                  "SELECT * FROM editions", "SELECT * FROM webhook_events"]
    # The id counters: AUTOINCREMENT's on SQLite, the id sequences on PostgreSQL.
    everything += (["SELECT last_value FROM subscribers_id_seq", "SELECT last_value FROM ledger_id_seq"] if POSTGRES
                   else ["SELECT * FROM sqlite_sequence"])
    before = [dump_by_name(path, sql) for sql in everything]
    engine = open_store(store_url(path))
    # Stamped at 0002, then upgraded: every value of every column that stays is unchanged.
    after = [dump_by_name(path, sql) for sql in everything]
    assert [same_columns(new, old) for new, old in zip(after, before, strict=True)] == \
           [same_columns(old, new) for new, old in zip(after, before, strict=True)]
    assert all(len(new) == len(old) for new, old in zip(after, before, strict=True))
    assert revision_of(path) == [(head_revision(),)]
    assert "schema_version" not in tables_of(path)
    assert subscriber_store.get(engine, email="a@example.com").sections == ("world", "tech")
    assert ledger.counts(engine, "2026-11-19") == {"pending": 0, "sent": 1, "failed": 0, "unknown": 1}
    assert subscriber_store.add(engine, "d@example.com", "D", ()).id == 4  # 3 was erased, not reused
    engine.dispose()


def test_a_store_newer_than_this_program_is_refused(tmp_path):
    path = tmp_path / "d.db"
    open_store(store_url(path)).dispose()
    rows(store_url(path), "UPDATE alembic_version SET version_num = '0099_from_the_future'")
    with pytest.raises(StoreError, match="newer than this program.*upgrade news-digest"):
        open_store(store_url(path))
    assert revision_of(path) == [("0099_from_the_future",)]  # untouched


def test_an_old_scheme_store_newer_than_this_program_is_refused(tmp_path):
    path = tmp_path / "d.db"
    rows(store_url(path), "CREATE TABLE schema_version (version INTEGER NOT NULL)")
    rows(store_url(path), "INSERT INTO schema_version VALUES (3)")
    with pytest.raises(StoreError, match="upgrade news-digest"):
        open_store(store_url(path))


def test_a_failed_adoption_changes_nothing(tmp_path, monkeypatch):
    """Stamp, drop schema_version and upgrade are one transaction: a failure leaves the v1 store as it was."""
    path = tmp_path / "v1.db"
    build_v1(path)
    before = {t: dump(path, f"SELECT * FROM {t}") for t in ("subscribers", "ledger", "schema_version")}
    import alembic.command

    def broken_upgrade(config, revision):
        config.attributes["connection"].execute(text("SELECT no_such_column FROM subscribers"))

    monkeypatch.setattr(alembic.command, "upgrade", broken_upgrade)
    with pytest.raises(StoreError):
        open_store(store_url(path))
    assert {t: dump(path, f"SELECT * FROM {t}") for t in before} == before
    assert "alembic_version" not in tables_of(path)


# -- digest db ---------------------------------------------------------------------------

def test_db_current_on_a_fresh_store_says_head(cli, workdir):
    assert cli("subscribers", "list").exit_code == 0  # any command creates the store
    result = cli("db", "current")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{head_revision()} (head)\n"


def test_db_upgrade_creates_an_empty_store_then_has_nothing_to_do(cli, workdir):
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"upgraded from none (empty database) to {head_revision()} (head)\n"
    assert cli("db", "upgrade").stdout == f"already at {head_revision()} (head)\n"
    assert cli("db", "current").stdout == f"{head_revision()} (head)\n"


def test_db_current_does_not_migrate_and_db_upgrade_adopts_a_v1_store(cli, workdir):
    build_v1(workdir / "digest.db")
    result = cli("db", "current")
    assert result.exit_code == 0, result.output
    assert "schema_version 1" in result.stdout and "not head" in result.stdout
    assert "schema_version" in tables_of(workdir / "digest.db")  # current only looks
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"upgraded from schema_version 1 (before Alembic) to {head_revision()} (head)\n"
    assert cli("db", "current").stdout == f"{head_revision()} (head)\n"


def test_db_commands_on_a_newer_store_exit_2_with_one_line(cli, workdir):
    path = workdir / "digest.db"
    open_store(store_url(path)).dispose()
    rows(store_url(path), "UPDATE alembic_version SET version_num = 'ffff'")
    for command in (("db", "current"), ("db", "upgrade"), ("subscribers", "list")):
        result = cli(*command)
        assert result.exit_code == 2, command
        assert result.stderr.startswith("error: the database is at schema revision 'ffff', newer than this program")
        assert result.stderr.count("\n") == 1 and "upgrade news-digest" in result.stderr


def test_db_current_on_a_foreign_database_exits_2(cli, workdir):
    rows(store_url(workdir / "digest.db"), "CREATE TABLE t (x INTEGER)")
    result = cli("db", "current")
    assert result.exit_code == 2 and "not a news-digest store" in result.stderr


def test_schema_state_reports_the_revision(tmp_path):
    url = store_url(tmp_path / "d.db")
    assert schema_state(url).revision is None
    open_store(url).dispose()
    state = schema_state(url)
    assert state.at_head and state.revision == head_revision() == "0012"


def test_two_processes_opening_a_new_store_at_once_take_turns_at_creating_it(tmp_path, monkeypatch):
    """Two stores (as two commands, or the web server and a cron job, on their first day) open
    one new, empty database at the same moment.  The first pauses with the schema created but
    not committed; the second must wait for it, not create the same tables too (and fail on
    the first's), then find the schema made."""
    import threading

    import alembic.command
    url = store_url(tmp_path / "new.db")
    real_upgrade, first_paused, second_done = alembic.command.upgrade, threading.Event(), threading.Event()

    def upgrade(config, revision):
        real_upgrade(config, revision)
        if threading.current_thread().name == "first":
            first_paused.set()
            second_done.wait(timeout=1)  # the second cannot finish first: it waits for our lock
    monkeypatch.setattr(alembic.command, "upgrade", upgrade)

    errors = []

    def open_it():
        try:
            open_store(url).dispose()
        except Exception as e:  # noqa: BLE001 (the test reports it)
            errors.append(f"{threading.current_thread().name}: {e}")
        finally:
            if threading.current_thread().name == "second":
                second_done.set()
    first = threading.Thread(target=open_it, name="first")
    first.start()
    assert first_paused.wait(timeout=30)
    second = threading.Thread(target=open_it, name="second")
    second.start()
    first.join(60), second.join(60)
    assert errors == []
    assert revision_of(tmp_path / "new.db") == [(head_revision(),)]
