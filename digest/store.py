"""The store: SQLAlchemy Core tables and the engine.

SQLite is the default (one file beside the config); the web server and the sender share
it, so connections use WAL and a busy timeout.  The schema is migrated by Alembic: the
revisions ship in digest/migrations/, and `open_store` runs whatever is missing (every
command does), as `digest db upgrade` does on purpose.
"""

from __future__ import annotations

import json
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    false,
    inspect,
    make_url,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

metadata = MetaData()

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
    # Pulled by an editor (digest articles withdraw): kept, but in no edition until restored.
    Column("withdrawn", Boolean, nullable=False, default=False, server_default=false()),
)

# Every editor's change to a story (withdraw, restore, ...): who, when, what.
article_changes = Table(
    "article_changes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("article_id", String(200), nullable=False, index=True),
    Column("action", String(20), nullable=False),
    Column("detail", Text, nullable=False, default="", server_default=""),
    Column("who", String(320), nullable=False),
    Column("at", DateTime, nullable=False),
)

# Feed URLs' validators (ETag, Last-Modified) from their last good import, sent back as
# If-None-Match / If-Modified-Since so an unchanged feed costs one 304 and no parsing.
feeds = Table(
    "feeds", metadata,
    Column("url", String(2000), primary_key=True),  # as asked for (before any redirect)
    Column("etag", Text),
    Column("last_modified", Text),
    Column("fetched_at", DateTime, nullable=False),
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
    # When the digest reaches this reader: an IANA zone and a local hour (NULL: the
    # newsletter's `timezone` and `delivery_hour`), daily or weekly (on `weekday`, 0 =
    # Monday), and no digest at all before `paused_until` (an ISO date, in their zone).
    Column("timezone", String(64)),
    Column("delivery_hour", Integer),
    Column("cadence", String(10), nullable=False, default="daily", server_default="daily"),
    Column("weekday", Integer),
    Column("paused_until", String(10)),
    # Ids are never reused: links in old emails name a subscriber by id, and must not
    # reach a later subscriber after an erasure.
    sqlite_autoincrement=True,
)
# The dry run reads the active audience grouped by section set.
Index("ix_subscribers_status_mask", subscribers.c.status, subscribers.c.section_mask, subscribers.c.id)
# Freezing finds the audience's distinct (zone, hour) pairs, and counts it, from this index alone.
Index("ix_subscribers_schedule", subscribers.c.status, subscribers.c.cadence, subscribers.c.timezone,
      subscribers.c.delivery_hour, subscribers.c.paused_until)

# An edition is frozen when its real send starts: the stories are copied here so a
# rerun sends the same content even if articles are edited or re-imported meanwhile.
editions = Table(
    "editions", metadata,
    Column("date", String(20), primary_key=True),
    Column("frozen_at", DateTime, nullable=False),
    Column("articles", JSON, nullable=False),
    # Audience members who left after the freeze, before their turn: their rows are dropped.
    Column("withdrawn", Integer, nullable=False, default=0, server_default="0"),
    # SendGrid's batch id for the edition's scheduled sends (digest cancel pauses or cancels them).
    Column("batch_id", String(100)),
)

# One row per (edition, subscriber): pending -> sent | failed | unknown.
ledger = Table(
    "ledger", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("edition", String(20), ForeignKey("editions.date"), nullable=False),
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
    # The sender that claimed this row ("host:pid:id") and until when its lease runs: a
    # live lease means the row is in flight, so `--retry unknown` leaves it alone.
    Column("claim", String(40)),
    Column("lease_until", DateTime),
    # When the row is due in the reader's inbox (UTC, naive; SendGrid's send_at); NULL: now.
    Column("send_at", DateTime),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("edition", "subscriber_id", name="uq_ledger_edition_subscriber"),
)
# Claiming the next chunk of one digest's pending rows due at one time is a range scan of this index.
Index("ix_ledger_claim", ledger.c.edition, ledger.c.status, ledger.c.section_mask, ledger.c.send_at, ledger.c.id)

# The editors who may sign in to the desk (digest editors add), and their failed sign-ins:
# after repeated failures an account is locked until `locked_until`.
editors = Table(
    "editors", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),  # lower-cased
    Column("password_hash", Text, nullable=False),  # argon2id, with its own salt and parameters
    Column("failed_signins", Integer, nullable=False, default=0, server_default="0"),
    Column("locked_until", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("last_signin_at", DateTime),
    # Every desk session carries the number it was signed in under; signing out raises it,
    # so a copy of the cookie is worth nothing afterwards, on any device.
    Column("session_epoch", Integer, nullable=False, default=0, server_default="0"),
)

# SendGrid event webhook deliveries already applied, so a redelivered event is a no-op.
webhook_events = Table(
    "webhook_events", metadata,
    Column("sg_event_id", String(200), primary_key=True),
    Column("event", String(40), nullable=False),
    Column("email", String(320)),
    Column("received_at", DateTime, nullable=False),
)


# Ids (subscribers.id, ledger.id) are INTEGER columns: 32-bit on PostgreSQL (64-bit on
# SQLite).  A larger number from outside (a webhook's custom arg) names nobody, and must
# not reach a query: PostgreSQL fails the statement with "integer out of range".
MAX_ID = 2**31


class StoreError(Exception):
    """The database cannot be opened or is not ours."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# How long a write waits for another process's write lock before giving up (milliseconds).
BUSY_TIMEOUT_MS = 10_000
BUSY_MESSAGE = "the database is busy (another process holds its write lock); nothing was changed, try again"


# PostgreSQL's SQLSTATEs for "another transaction holds what this one needs": lock_timeout
# ran out (lock_not_available), or the server broke a deadlock by rolling this one back.
# Either way the statement's transaction changed nothing, and the same command can be retried.
POSTGRES_BUSY = {"55P03", "40P01"}


def is_busy(exc: BaseException) -> bool:
    """Whether `exc` is the database refusing a write because another process holds the lock.

    Why a test of the message on SQLite: it says "database is locked" (or "busy") through
    the same OperationalError class as every other failure of the database.  PostgreSQL's
    driver gives an SQLSTATE instead, and its messages must not be read for words: a
    database or host whose name holds "locked" or "busy" is not a busy database.
    """
    if not isinstance(exc, OperationalError):
        return False
    if exc.orig is not None and hasattr(exc.orig, "sqlstate"):  # psycopg (None when no server answered)
        return exc.orig.sqlstate in POSTGRES_BUSY
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


def _postgres_session(dbapi_conn, _record) -> None:
    # SQLite's busy timeout, on PostgreSQL: a statement that has waited this long for another
    # process's lock gives up (SQLSTATE 55P03, which is_busy knows) instead of hanging the
    # command or the web request for as long as the other transaction lasts.
    with dbapi_conn.cursor() as cur:
        cur.execute(f"SET lock_timeout = {int(BUSY_TIMEOUT_MS)}")
    dbapi_conn.commit()  # psycopg began a transaction for the SET; the setting outlives it


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


def open_store(url: str, *, upgrade: bool = True) -> Engine:
    """Open the database at `url`, creating or migrating its schema (unless `upgrade` is False)."""
    url = normalise_url(url)
    try:
        parsed = make_url(url)
        shown = parsed.render_as_string(hide_password=True)
    except ArgumentError:
        raise StoreError("the database URL (DIGEST_DATABASE_URL or database_url) is not a URL like "
                         "sqlite:///digest.db") from None
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
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgres_session)
    if upgrade:
        with database_errors(engine):
            migrate(engine)
    return engine


@contextmanager
def database_errors(engine: Engine):
    """Database failures as one clear StoreError (the CLI prints it and exits 2)."""
    try:
        yield
    except OperationalError as e:
        if is_busy(e):
            raise StoreError(BUSY_MESSAGE) from None
        raise StoreError(f"cannot open database {engine.url.render_as_string(hide_password=True)}: {e.orig}") from None
    except SQLAlchemyError as e:
        raise StoreError(f"database error: {e}") from None


# -- migrations (Alembic) ---------------------------------------------------------------

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# The hand-rolled scheme before Alembic kept one row in `schema_version`; each of its
# versions is the schema of one revision here, so such a store is stamped, not rebuilt.
LEGACY_VERSIONS = {1: "0001", 2: "0002"}


def _alembic_config(conn=None):
    from alembic.config import Config

    # No alembic.ini: the scripts ship in the package, and the connection is the caller's.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


@cache
def _scripts():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def head_revision() -> str:
    return _scripts().get_current_head()


@dataclass(frozen=True)
class SchemaState:
    """Where a store's schema stands."""

    revision: str | None          # the Alembic revision; None: empty, or not yet adopted
    head: str                     # the newest revision this program knows
    legacy_version: int | None = None  # `schema_version` of a store from before Alembic

    @property
    def at_head(self) -> bool:
        return self.revision == self.head

    def describe(self) -> str:
        if self.revision is not None:
            return self.revision
        if self.legacy_version is not None:
            return f"schema_version {self.legacy_version} (before Alembic)"
        return "none (empty database)"


def _state(conn) -> SchemaState:
    """Read the schema's revision, refusing a store that is not ours or is newer than us."""
    from alembic.runtime.migration import MigrationContext
    from alembic.util import CommandError

    tables = set(inspect(conn).get_table_names())
    head = head_revision()
    if "schema_version" in tables:
        version = conn.execute(text("SELECT version FROM schema_version")).scalar_one()
        if version not in LEGACY_VERSIONS:
            raise StoreError(f"the database is at schema version {version}, newer than this program "
                             f"(which knows {max(LEGACY_VERSIONS)}); upgrade news-digest")
        return SchemaState(None, head, legacy_version=version)
    if "alembic_version" not in tables:
        if tables:
            raise StoreError("the database has tables but no alembic_version: not a news-digest store")
        return SchemaState(None, head)
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is not None:
        try:
            _scripts().get_revision(revision)
        except CommandError:
            # A later news-digest migrated this store; running older code on it could lose data.
            raise StoreError(f"the database is at schema revision {revision!r}, newer than this program "
                             f"(head {head}); upgrade news-digest") from None
    return SchemaState(revision, head)


# PostgreSQL advisory lock taken while migrating (any fixed number; this one spells "digest").
MIGRATION_LOCK_KEY = 0x646967657374


def migrate(engine: Engine) -> SchemaState:
    """Bring the schema up to the head revision; return where it stood before.

    All in one transaction: adopting a store of the old scheme (stamp it at its revision,
    drop `schema_version`) and upgrading it commit together or not at all.
    """
    from alembic import command

    with engine.begin() as conn:
        before = _state(conn)
        if before.at_head:
            return before  # the common case, every command: nothing to load or run
        driver = conn.connection.driver_connection
        if conn.dialect.name == "sqlite" and driver is not None and not driver.in_transaction:
            # Python's sqlite3 runs DDL (CREATE, DROP, ALTER) outside any transaction unless
            # one was begun, so a failed upgrade would leave half a migration behind.  Begin
            # one ourselves; IMMEDIATE also takes the write lock, so two commands migrating
            # at once take turns, and the second re-reads the state the first one left.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            before = _state(conn)
            if before.at_head:
                return before
        elif conn.dialect.name == "postgresql":
            # PostgreSQL keeps DDL inside the transaction already; what it lacks is SQLite's
            # one writer at a time: two commands opening a new store at once would both
            # create the tables, and one would fail.  This lock (held until the transaction
            # ends) makes them take turns, and the second re-reads the state the first left.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            before = _state(conn)
            if before.at_head:
                return before
        config = _alembic_config(conn)
        if before.legacy_version is not None:
            command.stamp(config, LEGACY_VERSIONS[before.legacy_version])
            conn.execute(text("DROP TABLE schema_version"))
        command.upgrade(config, "head")
        return before


def schema_state(url: str) -> SchemaState:
    """Where the store at `url` stands, without migrating it (`digest db current`)."""
    engine = open_store(url, upgrade=False)
    try:
        with database_errors(engine), engine.connect() as conn:
            return _state(conn)
    finally:
        engine.dispose()


def upgrade_store(url: str) -> tuple[SchemaState, str]:
    """Migrate the store at `url` to the head; return where it stood and the head (`digest db upgrade`)."""
    engine = open_store(url, upgrade=False)
    try:
        with database_errors(engine):
            return migrate(engine), head_revision()
    finally:
        engine.dispose()


def journal_mode(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text("PRAGMA journal_mode")).scalar_one()
