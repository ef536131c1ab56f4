"""A version-1 store (sections as JSON lists, commit 4896824) upgrades in place to the latest schema.

On SQLite the v1 tables are created with plain sqlite3, with the CREATE TABLE statements
that the metadata of digest/store.py at 4896824 creates, so the test does not depend on
today's code to build the "before" picture.  On PostgreSQL they are created by Alembic's
revision 0001 (the same schema, written out), and the store is either left there (a store
of this program at 0001) or turned into one of the old hand-rolled scheme (its
`alembic_version` swapped for `schema_version` 1).  The rows are the same on both.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from digest.config import SECTIONS, section_mask
from digest.deliver import ledger
from digest.store import _alembic_config, head_revision, normalise_url, open_store
from digest.subscribers import store as subscriber_store
from tests.stores import POSTGRES, rows, store_url

V1_SCHEMA = """
CREATE TABLE articles (
    id VARCHAR(200) NOT NULL,
    title TEXT NOT NULL,
    question TEXT,
    url TEXT NOT NULL,
    published DATETIME NOT NULL,
    sections JSON NOT NULL,
    priority INTEGER NOT NULL,
    featured BOOLEAN NOT NULL,
    summary TEXT NOT NULL,
    body TEXT NOT NULL,
    image TEXT,
    image_alt TEXT,
    source TEXT,
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX ix_articles_published ON articles (published);
CREATE TABLE editions (
    date VARCHAR(10) NOT NULL,
    frozen_at DATETIME NOT NULL,
    articles JSON NOT NULL,
    sender VARCHAR(200),
    sender_seen DATETIME,
    PRIMARY KEY (date)
);
CREATE TABLE schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE subscribers (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    email VARCHAR(320) NOT NULL,
    email_key VARCHAR(320) NOT NULL,
    name TEXT NOT NULL,
    sections JSON NOT NULL,
    status VARCHAR(20) NOT NULL,
    status_reason TEXT,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    UNIQUE (email_key)
);
CREATE TABLE webhook_events (
    sg_event_id VARCHAR(200) NOT NULL,
    event VARCHAR(40) NOT NULL,
    email VARCHAR(320),
    received_at DATETIME NOT NULL,
    PRIMARY KEY (sg_event_id)
);
CREATE TABLE ledger (
    id INTEGER NOT NULL,
    edition VARCHAR(10) NOT NULL,
    subscriber_id INTEGER NOT NULL,
    email VARCHAR(320) NOT NULL,
    name TEXT NOT NULL,
    sections JSON NOT NULL,
    status VARCHAR(10) NOT NULL,
    message_id TEXT,
    reason TEXT,
    attempts INTEGER NOT NULL,
    claim VARCHAR(40),
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT uq_ledger_edition_subscriber UNIQUE (edition, subscriber_id),
    FOREIGN KEY(edition) REFERENCES editions (date)
);
INSERT INTO schema_version (version) VALUES (1);
"""

NOW = "2026-11-20 08:00:00.000000"

# (email, name, sections as stored in v1, status, status_reason)
V1_SUBSCRIBERS = [
    ("Alex.Reader@Example.com", "Alex Reader", list(SECTIONS), "active", None),
    ("sam@example.org", "Sam Defaults", [], "active", None),
    ("jo@example.com", "Smith, Jo", ["world", "business"], "active", None),
    ("old@example.com", "Old Timer", ["world", "weather"], "paused", None),      # 'weather' was retired
    ("gone@example.com", "", ["weather"], "unsubscribed", "asked to leave"),      # only a retired section
    ("mixed@example.com", "Mixed Order", ["tech", "science", "world"], "active", None),  # not canonical order
    ("bounce@example.net", "Bo", ["gaming"], "bounced", "hard bounce"),
]

# (edition, subscriber index, resolved sections at freeze time, status, message_id, reason, attempts)
V1_LEDGER = [
    ("2026-11-19", 0, list(SECTIONS), "sent", "msg-a", None, 1),
    ("2026-11-19", 1, list(SECTIONS), "sent", "msg-a", None, 1),
    ("2026-11-19", 2, ["world", "business"], "failed", None, "SendGrid rejected the request (HTTP 400): bad", 1),
    ("2026-11-19", 5, ["world", "tech", "science"], "unknown", None, "no answer from SendGrid", 1),
    ("2026-11-20", 0, list(SECTIONS), "pending", None, None, 0),
    ("2026-11-20", 2, ["world", "business"], "pending", None, None, 0),
    ("2026-11-20", 3, ["world", "weather"], "sent", "msg-b", None, 2),
]


def expected_sections(stored: list[str]) -> tuple[str, ...]:
    """What v1 meant: the known sections, in canonical order (a retired name never matched one)."""
    return tuple(s for s in SECTIONS if s in stored)


def build_v1(path, legacy: bool = True) -> None:
    """The v1 store named `path` (tests/stores.py): of the old scheme (`schema_version` 1),
    or with `legacy=False` a store of this program at Alembic revision 0001."""
    url = store_url(path)
    if POSTGRES:
        from alembic import command
        engine = create_engine(normalise_url(url), poolclass=NullPool)
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "0001")
            if legacy:
                conn.execute(text("DROP TABLE alembic_version"))
                conn.execute(text("CREATE TABLE schema_version (version INTEGER NOT NULL)"))
                conn.execute(text("INSERT INTO schema_version (version) VALUES (1)"))
        engine.dispose()
    else:
        with closing(sqlite3.connect(path)) as conn:
            conn.executescript(V1_SCHEMA)
            if not legacy:
                conn.execute("DROP TABLE schema_version")
                conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
                conn.execute("INSERT INTO alembic_version VALUES ('0001')")
            conn.commit()
    for day in ("2026-11-19", "2026-11-20"):
        rows(url, "INSERT INTO editions (date, frozen_at, articles) VALUES (:day, :now, :articles)",
             day=day, now=NOW, articles=json.dumps([]))
    for email, name, sections, status, reason in V1_SUBSCRIBERS:
        rows(url, "INSERT INTO subscribers (email, email_key, name, sections, status, status_reason, created_at, "
                  "updated_at) VALUES (:email, :key, :name, :sections, :status, :reason, :now, :now)",
             email=email, key=email.lower(), name=name, sections=json.dumps(sections), status=status,
             reason=reason, now=NOW)
    ids = [i for (i,) in rows(url, "SELECT id FROM subscribers ORDER BY id")]
    for day, who, sections, status, message_id, reason, attempts in V1_LEDGER:
        email, name = V1_SUBSCRIBERS[who][0], V1_SUBSCRIBERS[who][1]
        rows(url, "INSERT INTO ledger (edition, subscriber_id, email, name, sections, status, message_id, reason, "
                  "attempts, updated_at) VALUES (:day, :id, :email, :name, :sections, :status, :message_id, "
                  ":reason, :attempts, :now)",
             day=day, id=ids[who], email=email, name=name, sections=json.dumps(sections), status=status,
             message_id=message_id, reason=reason, attempts=attempts, now=NOW)


def dump(path, sql) -> list[tuple]:
    return rows(store_url(path), sql)


def as_list(stored) -> list:
    """A JSON column's value: SQLite gives the text, PostgreSQL's driver the parsed list."""
    return json.loads(stored) if isinstance(stored, str) else stored


@pytest.mark.parametrize("legacy", [True, False], ids=["schema_version-1", "alembic-0001"])
def test_a_version_1_store_upgrades_in_place_and_keeps_everything(tmp_path, legacy):
    path = tmp_path / "v1.db"
    build_v1(path, legacy)
    before_subscribers = dump(path, "SELECT id, email, email_key, name, status, status_reason, created_at "
                                    "FROM subscribers ORDER BY id")
    before_ledger = dump(path, "SELECT id, edition, subscriber_id, email, name, status, message_id, reason, "
                               "attempts FROM ledger ORDER BY id")
    before_ledger_sections = [as_list(s) for (s,) in dump(path, "SELECT sections FROM ledger ORDER BY id")]

    url = store_url(path)
    engine = open_store(url)
    with engine.connect() as conn:
        # Adopted by Alembic: stamped, the old version table dropped, upgraded to the head.
        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(head_revision(),)]
        assert not inspect(conn).has_table("schema_version")
        columns = {t: {c["name"] for c in inspect(conn).get_columns(t)} for t in ("subscribers", "ledger")}
        indexes = {i["name"] for t in ("subscribers", "ledger") for i in inspect(conn).get_indexes(t)}
    assert "section_mask" in columns["subscribers"] and "sections" not in columns["subscribers"]
    assert "section_mask" in columns["ledger"] and "sections" not in columns["ledger"]
    assert {"ix_ledger_claim", "ix_subscribers_status_mask"} <= indexes

    # Nobody lost, nothing else about them changed.
    assert dump(path, "SELECT id, email, email_key, name, status, status_reason, created_at "
                      "FROM subscribers ORDER BY id") == before_subscribers
    for email, name, sections, status, reason in V1_SUBSCRIBERS:
        s = subscriber_store.get(engine, email=email)
        assert s is not None, email
        assert (s.email, s.name, s.status, s.status_reason) == (email, name, status, reason or "")
        assert s.sections == expected_sections(sections), email
    assert subscriber_store.get(engine, email="sam@example.org").sections == ()  # [] still means the defaults

    # Ledger rows keep edition, who, status, message id, reason and attempts; sections became masks.
    assert dump(path, "SELECT id, edition, subscriber_id, email, name, status, message_id, reason, "
                      "attempts FROM ledger ORDER BY id") == before_ledger
    masks = [m for (m,) in dump(path, "SELECT section_mask FROM ledger ORDER BY id")]
    assert masks == [section_mask(expected_sections(s)) for s in before_ledger_sections]
    assert masks[0] == 2 ** len(SECTIONS) - 1
    assert [(r.email, r.status, r.section_mask) for r in ledger.rows(engine, "2026-11-19")] == [
        (V1_SUBSCRIBERS[w][0], st, section_mask(expected_sections(sec)))
        for d, w, sec, st, *_ in V1_LEDGER if d == "2026-11-19"]
    assert ledger.counts(engine, "2026-11-20") == {"pending": 2, "sent": 1, "failed": 0, "unknown": 0}
    engine.dispose()

    # Opening again is a no-op: same version, same rows.
    snapshot = (dump(path, "SELECT * FROM subscribers ORDER BY id"), dump(path, "SELECT * FROM ledger ORDER BY id"),
                dump(path, "SELECT * FROM alembic_version"))
    again = open_store(url)
    again.dispose()
    assert (dump(path, "SELECT * FROM subscribers ORDER BY id"), dump(path, "SELECT * FROM ledger ORDER BY id"),
            dump(path, "SELECT * FROM alembic_version")) == snapshot


def test_the_upgraded_store_works_for_writes(tmp_path):
    """After the upgrade the store takes new subscribers and updates as a new one would."""
    path = tmp_path / "v1.db"
    build_v1(path)
    engine = open_store(store_url(path))
    new = subscriber_store.add(engine, "new@example.com", "New", ("tech", "world"))
    assert new.sections == ("world", "tech")
    assert new.id == len(V1_SUBSCRIBERS) + 1  # AUTOINCREMENT survived: ids keep growing
    subscriber_store.update(engine, "jo@example.com", sections=("food",))
    assert subscriber_store.get(engine, email="jo@example.com").sections == ("food",)
