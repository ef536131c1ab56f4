"""Editions: the day's curated stories, live until sending starts, then frozen.

Freezing copies the stories into `editions` and writes the audience into the ledger in one
transaction, so every later run of the same day sends the same content to the rest of
the same people, whatever was imported or changed meanwhile.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
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
