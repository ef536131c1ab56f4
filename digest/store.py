"""The store: SQLAlchemy Core tables and the engine.

SQLite is the default (one file beside the config); the web server and the sender share
it, so connections use WAL and a busy timeout.  The schema is versioned: `MIGRATIONS[n]`
brings a database from version n to n+1, and `open_store` runs whatever is missing.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from datetime import datetime, timezone

from sqlalchemy import (
    JSON, Boolean, Column, DateTime, ForeignKey, Index, Integer, MetaData, String, Table, Text,
    UniqueConstraint, create_engine, event, inspect, make_url, select, text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

metadata = MetaData()

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, nullable=False),
)

articles = Table(
    "articles", metadata,
    Column("id", String(200), primary_key=True),
    Column("title", Text, nullable=False),
    Column("question", Text),
    Column("url", Text, nullable=False),
    Column("published", DateTime, nullable=False, index=True),  # UTC, naive
    Column("sections", JSON, nullable=False),  # list of section names
    Column("priority", Integer, nullable=False, default=100),
    Column("featured", Boolean, nullable=False, default=False),
    Column("summary", Text, nullable=False, default=""),
    Column("body", Text, nullable=False, default=""),
    Column("image", Text),
    Column("image_alt", Text),
    Column("source", Text),  # file or URL it was imported from
    Column("updated_at", DateTime, nullable=False),
)

subscribers = Table(
    "subscribers", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    # Addresses compare case-insensitively: the unique key is the lower-cased address.
    Column("email_key", String(320), nullable=False, unique=True),
    Column("name", Text, nullable=False, default=""),
    # The chosen sections (digest.config.section_mask); 0 means the newsletter's defaults.
    Column("section_mask", Integer, nullable=False, default=0),
    Column("status", String(20), nullable=False, default="active"),
    Column("status_reason", Text),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    # Ids are never reused: links in old emails name a subscriber by id, and must not
    # reach a later subscriber after an erasure.
    sqlite_autoincrement=True,
)
# The dry run reads the active audience grouped by section set.
Index("ix_subscribers_status_mask", subscribers.c.status, subscribers.c.section_mask, subscribers.c.id)

# An edition is frozen when its real send starts: the stories are copied here so a
# rerun sends the same content even if articles are edited or re-imported meanwhile.
editions = Table(
    "editions", metadata,
    Column("date", String(10), primary_key=True),
    Column("frozen_at", DateTime, nullable=False),
    Column("articles", JSON, nullable=False),
    # The run sending this edition now ("host:pid:claim") and when it last showed life:
    # one sender at a time, so `--retry unknown` can never resend a row still in flight.
    Column("sender", String(200)),
    Column("sender_seen", DateTime),
)

# One row per (edition, subscriber): pending -> sent | failed | unknown.
ledger = Table(
    "ledger", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("edition", String(10), ForeignKey("editions.date"), nullable=False),
    Column("subscriber_id", Integer, nullable=False),
    Column("email", String(320), nullable=False),
    Column("name", Text, nullable=False, default=""),
    # The sections resolved at freeze time (a section mask): rows with equal masks get
    # the same digest, so the send claims them together, in chunks, in this order.
    Column("section_mask", Integer, nullable=False),
    Column("status", String(10), nullable=False, default="pending"),
    Column("message_id", Text),
    Column("reason", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claim", String(40)),  # the run that took this row for sending (a per-row lock)
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("edition", "subscriber_id", name="uq_ledger_edition_subscriber"),
)
# Claiming the next chunk of one digest's pending rows is a range scan of this index.
Index("ix_ledger_claim", ledger.c.edition, ledger.c.status, ledger.c.section_mask, ledger.c.id)

# SendGrid event webhook deliveries already applied, so a redelivered event is a no-op.
webhook_events = Table(
    "webhook_events", metadata,
    Column("sg_event_id", String(200), primary_key=True),
    Column("event", String(40), nullable=False),
    Column("email", String(320)),
    Column("received_at", DateTime, nullable=False),
)


def _v0_to_v1(conn) -> None:
    raise StoreError("a version 0 store with tables cannot be upgraded")  # new stores are created whole


def _v1_to_v2(conn) -> None:
    """Sections stored as section masks (integers) instead of JSON lists."""
    from digest.config import SECTIONS, section_mask

    def to_mask(raw) -> int:
        names = json.loads(raw) if isinstance(raw, str) else (raw or [])
        return section_mask(n for n in names if n in SECTIONS)

    for table in ("subscribers", "ledger"):
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN section_mask INTEGER NOT NULL DEFAULT 0"))
        rows = conn.execute(text(f"SELECT id, sections FROM {table}")).all()
        if rows:
            conn.execute(text(f"UPDATE {table} SET section_mask = :m WHERE id = :id"),
                         [{"id": i, "m": to_mask(raw)} for i, raw in rows])
        conn.execute(text(f"ALTER TABLE {table} DROP COLUMN sections"))
    for index in metadata.tables["subscribers"].indexes | metadata.tables["ledger"].indexes:
        index.create(conn, checkfirst=True)


# MIGRATIONS[n] brings a store from version n to n + 1; a new store is created at the
# latest version directly.
MIGRATIONS = [_v0_to_v1, _v1_to_v2]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """The database cannot be opened or is not ours."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# How long a write waits for another process's write lock before giving up (milliseconds).
BUSY_TIMEOUT_MS = 10_000
BUSY_MESSAGE = "the database is busy (another process holds its write lock); nothing was changed, try again"


def is_busy(exc: BaseException) -> bool:
    """Whether `exc` is the database refusing a write because another process holds the lock.

    Why a test of the message: SQLite says "database is locked" (or "busy") through the
    same OperationalError class as every other failure of the database.
    """
    if not isinstance(exc, OperationalError):
        return False
    words = str(exc.orig if exc.orig is not None else exc).lower()
    return "locked" in words or "busy" in words


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # Durability: in WAL mode a COMMIT has written the transaction to the -wal file (write(2),
    # into the OS's page cache) before it returns, so a crash or kill -9 of this process
    # cannot lose a recorded outcome or a claim: the next connection replays the WAL.
    # synchronous=NORMAL skips the fsync per commit (SQLite's own advice for WAL); what it
    # risks is only an OS crash or power cut rolling back the last commits before a
    # checkpoint.  The send commits twice per request, so a fsync each would be most of its time.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_MS)}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def transaction(conn_or_engine):
    """A transaction: a new one on an Engine, or the caller's own on a Connection.

    Why: a step that must commit together with the caller's other writes (the webhook
    applies an event and records it as seen) runs inside the caller's transaction.
    """
    if isinstance(conn_or_engine, Engine):
        return conn_or_engine.begin()
    return nullcontext(conn_or_engine)


POSTGRES_EXTRA = "pip install 'news-digest[postgres]'"


def normalise_url(url: str) -> str:
    """The URL with PostgreSQL's usual spellings pointed at psycopg 3.

    Why: hosting providers hand out `postgres://…` (which SQLAlchemy refuses) and people
    write `postgresql://…` (which SQLAlchemy maps to psycopg2, not the driver we ship in
    the `postgres` extra).  Both mean psycopg 3 here; any other URL is left untouched.
    """
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def open_store(url: str) -> Engine:
    """Open (creating or migrating as needed) the database at `url`."""
    url = normalise_url(url)
    try:
        parsed = make_url(url)
        shown = parsed.render_as_string(hide_password=True)
    except ArgumentError:
        raise StoreError("the database URL (DIGEST_DATABASE_URL or database_url) is not a URL like sqlite:///digest.db") from None
    try:
        engine = create_engine(url, json_serializer=lambda v: json.dumps(v, ensure_ascii=False))
    except ImportError as e:
        # The dialect is known but its driver is not installed: for PostgreSQL, say the extra.
        if parsed.get_backend_name() == "postgresql":
            raise StoreError(f"the database URL {shown!r} needs the PostgreSQL driver (psycopg 3), which is not "
                             f"installed: install the PostgreSQL extra: {POSTGRES_EXTRA}") from None
        raise StoreError(f"the database URL {shown!r} is not usable: {str(e).replace(url, shown)}") from None
    except ArgumentError as e:
        raise StoreError(f"the database URL {shown!r} is not usable: {str(e).replace(url, shown)}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        migrate(engine)
    except OperationalError as e:
        if is_busy(e):
            raise StoreError(BUSY_MESSAGE) from None
        raise StoreError(f"cannot open database {engine.url.render_as_string(hide_password=True)}: {e.orig}") from None
    except SQLAlchemyError as e:
        raise StoreError(f"database error: {e}") from None
    return engine


def migrate(engine: Engine) -> int:
    """Bring the schema up to SCHEMA_VERSION; return the version found before."""
    with engine.begin() as conn:
        if not inspect(conn).has_table("schema_version"):
            if inspect(conn).get_table_names():
                raise StoreError("the database has tables but no schema_version: not a news-digest store")
            metadata.create_all(conn)
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        current = conn.execute(select(schema_version.c.version)).scalar_one()
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"the database is at schema version {current}, newer than this program ({SCHEMA_VERSION}); upgrade news-digest"
            )
        for step in MIGRATIONS[current:]:
            step(conn)
        if current != SCHEMA_VERSION:
            conn.execute(schema_version.update().values(version=SCHEMA_VERSION))
        return current


def journal_mode(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text("PRAGMA journal_mode")).scalar_one()
