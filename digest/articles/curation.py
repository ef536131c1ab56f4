"""Editors' changes to a day's stories, each recorded (who, when, what).

`withdraw` pulls a story from its edition (it stays stored, and a re-import does not bring
it back); `restore` puts it back.  Both are refused once the story's edition is frozen:
sending has started, and every reader of the day gets the same edition.  The CLI's
`digest articles withdraw|restore` and the editors' desk share these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from digest.articles import Article
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
        row = conn.execute(select(articles.c.published, articles.c.withdrawn)
                           .where(articles.c.id == article_id).with_for_update()).first()
        if row is None:
            raise CurationError(f"no story has the id {article_id!r} (digest articles list --all shows them)")
        day = edition_day(row.published, settings)
        frozen = conn.execute(select(editions.c.frozen_at).where(editions.c.date == day.isoformat())).scalar()
        if frozen is not None:
            raise CurationError(f"cannot {action} {article_id!r}: the edition of {day} is frozen (sending "
                                f"started {frozen:%Y-%m-%d %H:%M} UTC), so its stories no longer change")
        if bool(row.withdrawn) == pulled:
            raise CurationError(f"{article_id!r} is already {'withdrawn' if pulled else 'in its edition'}")
        conn.execute(update(articles).where(articles.c.id == article_id).values(withdrawn=pulled))
        conn.execute(article_changes.insert().values(article_id=article_id, action=action, detail="",
                                                     who=who, at=utcnow()))
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
