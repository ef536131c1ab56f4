"""Editions: the day's curated stories, live until sending starts, then frozen.

Freezing copies the stories into `editions` and writes the audience into the ledger in one
transaction, so every later run of the same day sends the same content to the rest of
the same people, whatever was imported or changed meanwhile.
"""

from __future__ import annotations

import os
import socket
from datetime import date, timedelta

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from digest.articles import Article
from digest.articles.repository import articles_published_on
from digest.config import Settings
from digest.select import Edition
from digest.store import editions, ledger, utcnow


def load_edition(engine: Engine, day: date, settings: Settings) -> Edition:
    """The frozen edition of `day` if sending has started, else the live one."""
    with engine.connect() as conn:
        row = conn.execute(select(editions).where(editions.c.date == day.isoformat())).first()
    if row:
        return Edition(day, tuple(Article.from_dict(a) for a in row.articles), frozen=True)
    return Edition(day, tuple(articles_published_on(engine, day, settings.tz)), frozen=False)


def freeze(engine: Engine, edition: Edition, audience) -> bool:
    """Freeze `edition` with `audience` [(subscriber_id, email, name, sections)] as pending rows.

    Returns False if another run froze it first (then its audience stands, not ours).
    """
    now = utcnow()
    try:
        with engine.begin() as conn:
            conn.execute(editions.insert().values(
                date=edition.date.isoformat(), frozen_at=now,
                articles=[a.to_dict() for a in edition.articles]))
            if audience:
                conn.execute(ledger.insert(), [
                    {"edition": edition.date.isoformat(), "subscriber_id": sid, "email": email,
                     "name": name, "sections": list(sections), "status": "pending", "updated_at": now}
                    for sid, email, name, sections in audience
                ])
    except IntegrityError:
        return False
    return True


def is_frozen(engine: Engine, day: date) -> bool:
    """Has the real send of `day` started?"""
    with engine.connect() as conn:
        return conn.execute(select(editions.c.date).where(editions.c.date == day.isoformat())).first() is not None


# A sender that has not shown life for this long is presumed dead (longer than the worst
# case of one batch: retries with 60 s waits plus request timeouts).
STALE_AFTER = timedelta(minutes=15)


def sender_name(claim_id: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{claim_id[:8]}"


def _alive(sender: str, seen) -> bool:
    host, _, rest = sender.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return False  # killed on this machine: its lock can be taken at once
        except PermissionError:
            pass
    return seen is not None and utcnow() - seen < STALE_AFTER


def take_send_lock(engine: Engine, day: date, me: str) -> str | None:
    """Become the edition's only sender; return None on success, else who is sending."""
    with engine.begin() as conn:
        row = conn.execute(select(editions.c.sender, editions.c.sender_seen)
                           .where(editions.c.date == day.isoformat())).first()
        if row.sender and row.sender != me and _alive(row.sender, row.sender_seen):
            return f"{row.sender} (last seen {row.sender_seen:%Y-%m-%d %H:%M:%S} UTC)"
        held = editions.c.sender.is_(None) if row.sender is None else editions.c.sender == row.sender
        taken = conn.execute(update(editions).where(editions.c.date == day.isoformat(), held)
                             .values(sender=me, sender_seen=utcnow())).rowcount
        return None if taken else "another run that started at the same moment"


def touch_send_lock(engine: Engine, day: date, me: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(editions).where(editions.c.date == day.isoformat(), editions.c.sender == me)
                     .values(sender_seen=utcnow()))


def release_send_lock(engine: Engine, day: date, me: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(editions).where(editions.c.date == day.isoformat(), editions.c.sender == me)
                     .values(sender=None, sender_seen=None))
