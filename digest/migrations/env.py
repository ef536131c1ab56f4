"""Alembic's entry point for the store's migrations.

digest.store runs these programmatically: it builds the Config in code and passes its
open connection (inside its own transaction) as config.attributes["connection"].  That
works the same for a SQLite file, an in-memory SQLite database (a second connection would
see another, empty database) and PostgreSQL, and the caller decides when to commit.
"""

from __future__ import annotations

from alembic import context

from digest.store import metadata

config = context.config


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.  Harmless
        # on PostgreSQL, where batch operations are plain ALTERs.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    # With the caller's transaction already open this is a no-op: the whole upgrade
    # commits or rolls back together with the caller's adoption of an old store.
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("the store's migrations run online only: use `digest db upgrade`")

connection = config.attributes.get("connection")
if connection is None:
    # Run from the `alembic` command line (developers writing a revision):
    # `alembic -x url=sqlite:///digest.db ...` or DIGEST_DATABASE_URL.
    import os

    from digest.store import open_store

    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("DIGEST_DATABASE_URL", "sqlite:///digest.db")
    engine = open_store(url, upgrade=False)
    with engine.begin() as conn:
        run(conn)
    engine.dispose()
else:
    run(connection)
