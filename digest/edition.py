"""Editions: the day's curated stories, live until sending starts, then frozen.

Freezing copies the stories into `editions` and writes the audience into the ledger in one
transaction, so every later run of the same day sends the same content to the rest of
the same people, whatever was imported or changed meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from digest.articles import Article
from digest.articles.repository import articles_published_on
from digest.config import Settings, section_mask
from digest.deliver import ledger
from digest.select import Edition, edition_key, lead_story, story_mask, week_leads
from digest.store import editions, utcnow

WEEK = 7  # the weekly edition of D holds the edition days D-6 ... D


def load_edition(engine: Engine, day: date, settings: Settings, weekly: bool = False) -> Edition:
    """The frozen edition of `day` (`weekly`: of the week to `day`) if sending has started,
    else the live one."""
    with engine.connect() as conn:
        row = conn.execute(select(editions).where(editions.c.date == edition_key(day, weekly))).first()
    if row:
        stories = tuple(Article.from_dict(a) for a in row.articles)
        return _edition(day, stories, settings, weekly, frozen=True)
    return _edition(day, stories_of(engine, day, settings, weekly), settings, weekly, frozen=False)


def stories_of(engine: Engine, day: date, settings: Settings, weekly: bool = False) -> tuple[Article, ...]:
    """The stories of the edition of `day` as stored now; weekly: those of the seven edition
    days ending `day`, each day's as its daily edition holds them (withdrawn ones left out)."""
    days = [day - timedelta(days=n) for n in range(WEEK - 1, -1, -1)] if weekly else [day]
    return tuple(a for d in days for a in articles_published_on(engine, d, settings.tz))


def _edition(day: date, stories: tuple[Article, ...], settings: Settings, weekly: bool, frozen: bool) -> Edition:
    if not weekly:
        return Edition(day, stories, frozen=frozen)
    return Edition(day, stories, frozen=frozen, weekly=True, leads=week_leads(stories, settings.tz))


@dataclass(frozen=True)
class Frozen:
    """The outcome of `freeze`: the edition as it will be sent, and what this call did."""
    edition: Edition
    audience: int | None  # rows written by this call; None if another run froze it first
    skipped_empty: int = 0  # active subscribers left out: their digest would hold no story
    skipped_lead_only: int = 0  # left out: only the lead story, and send_lead_only is off


def freeze(engine: Engine, edition: Edition, settings: Settings) -> Frozen:
    """Freeze `edition` (its stories, and its audience as pending ledger rows) if not yet frozen.

    One transaction: the stories are copied and the audience written with one
    INSERT ... SELECT, each row due at its reader's hour (digest.schedule, through
    ledger.Schedule), so a crash leaves either both or neither.  If another run froze
    it first (the primary key says so), its edition and audience stand.
    """
    day = edition.key
    try:
        with engine.begin() as conn:
            conn.execute(editions.insert().values(date=day, frozen_at=utcnow(),
                                                  articles=[a.to_dict() for a in edition.articles]))
            schedule = ledger.Schedule(conn, edition.date, settings, weekly=edition.weekly)
            written = ledger.freeze_audience(conn, day, section_mask(settings.sections),
                                             section_mask(settings.default_sections),
                                             story_mask(edition, settings.send_lead_only), schedule)
            active = conn.execute(select(func.count()).select_from(schedule.source)
                                  .where(schedule.audience)).scalar_one()
    except IntegrityError:
        return Frozen(load_edition(engine, edition.date, settings, edition.weekly), None)
    skipped = active - written
    # A lead story (weekly: the week's leads) opens every digest: whoever is left out had the lead only.
    if edition.leads if edition.weekly else lead_story(edition.articles):
        return Frozen(replace(edition, frozen=True), written, skipped_lead_only=skipped)
    return Frozen(replace(edition, frozen=True), written, skipped)


def refreeze(engine: Engine, day: date, settings: Settings, weekly: bool = False) -> int | None:
    """Replace a frozen edition's stories with the day's stories as stored now; how many.

    The way out when a frozen story is broken (its digests cannot render, so their rows
    failed): fix the file, import it again, then `digest send --refreeze --retry failed`.
    The audience and every ledger row stay: nobody sent is sent again; only rows not yet
    sent get the corrected stories.  None if the edition was never frozen.
    """
    stories = stories_of(engine, day, settings, weekly)
    with engine.begin() as conn:
        n = conn.execute(update(editions).where(editions.c.date == edition_key(day, weekly))
                         .values(articles=[a.to_dict() for a in stories])).rowcount
    return len(stories) if n else None


def frozen_at(engine: Engine, day: date) -> datetime | None:
    """When the real send of `day` started (its edition froze; UTC), or None: still live."""
    with engine.connect() as conn:
        return conn.execute(select(editions.c.frozen_at).where(editions.c.date == day.isoformat())).scalar()


def is_frozen(engine: Engine, day: date, weekly: bool = False) -> bool:
    """Has the real send of `day` (`weekly`: of the week to `day`) started?"""
    with engine.connect() as conn:
        key = edition_key(day, weekly)
        return conn.execute(select(editions.c.date).where(editions.c.date == key)).first() is not None
