"""Editors' changes to a day's stories, each recorded (who, when, what).

`withdraw` pulls a story from its edition (it stays stored, and a re-import does not bring
it back); `restore` puts it back.  `feature` makes a story the day's lead (the only
featured one); `set_priority` orders it within its sections, and `move` does so relative
to its neighbour.  A re-import keeps what an editor set (repository.EDITOR_SET).  All are
refused once the story's edition is frozen: sending has started, and every reader of the
day gets the same edition.  The CLI's `digest articles withdraw|restore|feature|update`
and the editors' desk share these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from digest.articles import Article
from digest.articles.repository import articles_published_on, day_bounds
from digest.config import Settings
from digest.select import lead_story, story_order
from digest.store import article_changes, articles, editions, utcnow


class CurationError(Exception):
    """A change that cannot be made; the message says why."""


@dataclass(frozen=True)
class Change:
    article_id: str
    action: str
    detail: str
    who: str
    at: datetime


def edition_day(published: datetime, settings: Settings) -> date:
    """The edition a story belongs to: its publication day in the newsletter's time zone
    (`published` aware, as an Article has it, or naive UTC, as the store keeps it)."""
    aware = published if published.tzinfo else published.replace(tzinfo=timezone.utc)
    return aware.astimezone(settings.tz).date()


def withdraw(engine: Engine, article_id: str, settings: Settings, who: str) -> date:
    """Pull a story from its edition; the edition's day."""
    return _set_withdrawn(engine, article_id, settings, who, True)


def restore(engine: Engine, article_id: str, settings: Settings, who: str) -> date:
    """Put a withdrawn story back in its edition; the edition's day."""
    return _set_withdrawn(engine, article_id, settings, who, False)


def _set_withdrawn(engine: Engine, article_id: str, settings: Settings, who: str, pulled: bool) -> date:
    action = "withdraw" if pulled else "restore"
    with engine.begin() as conn:
        row, day = _live_story(conn, article_id, settings, action)
        if bool(row.withdrawn) == pulled:
            raise CurationError(f"{article_id!r} is already {'withdrawn' if pulled else 'in its edition'}")
        conn.execute(update(articles).where(articles.c.id == article_id).values(withdrawn=pulled))
        _record(conn, article_id, action, "", who)
    return day


def _live_story(conn: Connection, article_id: str, settings: Settings, action: str):
    """The story's row (locked until the change commits) and its edition's day; refused
    when there is no such story or its edition is frozen."""
    row = conn.execute(select(articles.c.published, articles.c.withdrawn, articles.c.featured,
                              articles.c.priority)
                       .where(articles.c.id == article_id).with_for_update()).first()
    if row is None:
        raise CurationError(f"no story has the id {article_id!r} (digest articles list --all shows them)")
    day = edition_day(row.published, settings)
    frozen = conn.execute(select(editions.c.frozen_at).where(editions.c.date == day.isoformat())).scalar()
    if frozen is not None:
        raise CurationError(f"cannot {action} {article_id!r}: the edition of {day} is frozen (sending "
                            f"started {frozen:%Y-%m-%d %H:%M} UTC), so its stories no longer change")
    return row, day


def _record(conn: Connection, article_id: str, action: str, detail: str, who: str) -> None:
    conn.execute(article_changes.insert().values(article_id=article_id, action=action, detail=detail,
                                                 who=who, at=utcnow()))


def feature(engine: Engine, article_id: str, settings: Settings, who: str) -> date:
    """Make a story its edition's lead: featured, and every other featured story of that
    day not (each change recorded); the edition's day."""
    with engine.begin() as conn:
        row, day = _live_story(conn, article_id, settings, "feature")
        if row.withdrawn:
            raise CurationError(f"cannot feature {article_id!r}: it is withdrawn from its edition "
                                f"(digest articles restore {article_id} puts it back)")
        start, end = day_bounds(day, settings.tz)
        others = conn.execute(select(articles.c.id).where(
            articles.c.published >= start, articles.c.published < end, articles.c.featured,
            articles.c.id != article_id).order_by(articles.c.id).with_for_update()).scalars().all()
        if row.featured and not others:
            raise CurationError(f"{article_id!r} is already the lead story of {day}")
        for other in others:
            conn.execute(update(articles).where(articles.c.id == other).values(featured=False))
            _record(conn, other, "unfeature", f"{article_id} leads instead", who)
        conn.execute(update(articles).where(articles.c.id == article_id).values(featured=True))
        _record(conn, article_id, "feature", "", who)
    return day


MIN_PRIORITY, MAX_PRIORITY = -10**9, 10**9  # what a story's front matter may say, too


def set_priority(engine: Engine, article_id: str, settings: Settings, who: str, priority: int) -> date:
    """Give a story a priority (lower first within its sections); the edition's day."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise CurationError(f"the priority must be a whole number within ±1,000,000,000, not {priority!r}")
    with engine.begin() as conn:
        row, day = _live_story(conn, article_id, settings, "reorder")
        if row.priority == priority:
            raise CurationError(f"{article_id!r} already has priority {priority}")
        conn.execute(update(articles).where(articles.c.id == article_id).values(priority=priority))
        _record(conn, article_id, "priority", f"{row.priority} → {priority}", who)
    return day


def move(engine: Engine, article_id: str, settings: Settings, who: str, section: str, up: bool) -> date:
    """Move a story one place up (or down) among `section`'s stories of its edition, in
    terms of set_priority: it gets a priority that puts it just past its neighbour (the
    stories' order is priority, then publication time).  When no priority of its own can
    (its new neighbours share priorities and times that pin it), the section's stories
    are numbered in the new order, each change recorded."""
    with engine.connect() as conn:
        published = conn.execute(select(articles.c.published).where(articles.c.id == article_id)).scalar()
    if published is None:
        raise CurationError(f"no story has the id {article_id!r} (digest articles list --all shows them)")
    day = edition_day(published, settings)
    stories = articles_published_on(engine, day, settings.tz)
    lead = lead_story(stories)
    listed = sorted((a for a in stories if section in a.sections and a is not lead), key=story_order)
    at = next((i for i, a in enumerate(listed) if a.id == article_id), None)
    if at is None:
        raise CurationError(f"{article_id!r} is not among the {section} stories of {day}")
    to = at - 1 if up else at + 1
    if not 0 <= to < len(listed):
        raise CurationError(f"{article_id!r} is already {'first' if up else 'last'} in {section} on {day}")
    story = listed.pop(at)
    listed.insert(to, story)
    before, after = (listed[to - 1] if to else None), (listed[to + 1] if to + 1 < len(listed) else None)
    lo = before.priority if before else after.priority - 1 if after else story.priority
    hi = after.priority if after else lo + 1

    def fits(p: int) -> bool:
        key = (p, story.published, story.id)
        return (before is None or story_order(before) < key) and (after is None or key < story_order(after))
    # The nearest priority to its own that places it there (only lo..hi can).
    found = sorted((p for p in {lo, lo + 1, hi - 1, hi} if lo <= p <= hi and fits(p)),
                   key=lambda p: abs(p - story.priority))
    if found:
        return set_priority(engine, article_id, settings, who, found[0])
    first = min(a.priority for a in listed)
    for i, a in enumerate(listed):
        if a.priority != first + i:
            set_priority(engine, a.id, settings, who, first + i)
    return day


def changes(engine: Engine, article_ids) -> list[Change]:
    """The recorded changes to these stories, oldest first."""
    q = (select(article_changes).where(article_changes.c.article_id.in_(list(article_ids)))
         .order_by(article_changes.c.id))
    with engine.connect() as conn:
        return [Change(r.article_id, r.action, r.detail, r.who, r.at) for r in conn.execute(q)]


def lead_warning(day: date, day_articles: list[Article]) -> str | None:
    """When several stories of a day are featured, which one leads (only one does)."""
    featured = sorted((a for a in day_articles if a.featured), key=story_order)
    if len(featured) < 2:
        return None
    lead = lead_story(day_articles)
    assert lead is not None
    others = ", ".join(repr(a.id) for a in featured if a.id != lead.id)
    return (f"{len(featured)} stories are featured on {day}; {lead.id!r} leads "
            f"(lowest priority, then earliest); {others} appear in their sections only")
