"""The stores tests run on: SQLite files, or (when DIGEST_TEST_POSTGRES is set, as
`make test-postgres` does) databases of a real PostgreSQL server.

A test names its store by the SQLite file it would use (`tmp_path / "digest.db"`), and
`store_url(path)` gives the URL: that file on the SQLite pass; on the PostgreSQL pass a
new empty database made for that path, the same one every time it is asked for.  A
database lives as long as its folder would: one under a test's `tmp_path` is dropped
when the test ends (conftest), one of a module or session fixture at the end of the run.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from digest.store import normalise_url

# The server's own URL (its `postgres` database, as a superuser), or None: the SQLite pass.
POSTGRES = os.environ.get("DIGEST_TEST_POSTGRES") or None
ENGINE_NAME = "postgresql" if POSTGRES else "sqlite"

_made: dict[Path, str] = {}  # path -> database name (PostgreSQL pass only)
_numbers = itertools.count(1)


def _admin():
    # Autocommit: CREATE/DROP DATABASE cannot run inside a transaction.  NullPool: a
    # database cannot be copied or dropped while any connection (even an idle one) is on it.
    return create_engine(normalise_url(POSTGRES), isolation_level="AUTOCOMMIT", poolclass=NullPool)


def _url_of(name: str) -> str:
    return make_url(normalise_url(POSTGRES)).set(database=name).render_as_string(hide_password=False)


def _create(name: str, template: str) -> None:
    engine = _admin()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        engine.dispose()


def _drop(names) -> None:
    engine = _admin()
    try:
        with engine.connect() as conn:
            for name in names:
                # FORCE: a test's leftover engine (or a `digest serve` it started) may still be connected.
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


def store_url(path: Path) -> str:
    """The URL of the test store named by `path` (the SQLite file it would be)."""
    path = Path(path).resolve()
    if not POSTGRES:
        return f"sqlite:///{path}"
    if path not in _made:
        # template0: truly empty, as a new SQLite file is (template1 may have been changed).
        name = f"t{os.getpid()}_{next(_numbers)}"
        _create(name, "template0")
        _made[path] = name
    return _url_of(_made[path])


def copy_store(source: Path, dest: Path) -> str:
    """Make the store named `dest` a copy of the one named `source`; its URL.

    The URL `dest` had (if any) stays valid, so a fixture's environment still points at it.
    """
    source, dest = Path(source).resolve(), Path(dest).resolve()
    if not POSTGRES:
        for suffix in ("", "-wal", "-shm"):  # WAL mode: the -wal file may hold committed rows
            if Path(f"{source}{suffix}").exists():
                shutil.copy(f"{source}{suffix}", f"{dest}{suffix}")
        return store_url(dest)
    name = _made.get(dest) or f"t{os.getpid()}_{next(_numbers)}"
    _drop([name])
    _create(name, _made[source])
    _made[dest] = name
    return _url_of(name)


def drop_stores_under(folder: Path) -> None:
    """Drop the PostgreSQL databases made for paths inside `folder` (a test's tmp_path)."""
    folder = Path(folder).resolve()
    gone = [p for p in _made if p.is_relative_to(folder)]
    if gone:
        _drop(_made.pop(p) for p in gone)


def drop_all_stores() -> None:
    if _made:
        _drop(list(_made.values()))
        _made.clear()


def rows(url: str, sql: str, **params) -> list[tuple]:
    """Run one statement on the store at `url` (committed) and return its rows, if any.

    Tests look into the ledger this way, through SQLAlchemy, on either engine.
    """
    engine = create_engine(normalise_url(url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()
