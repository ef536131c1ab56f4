"""Articles in the store: save (insert or update by id) and read back by day."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from digest.articles import Article
from digest.importing import ImportReport
from digest.store import article_changes, articles, feeds, utcnow

# The fields an editor's recorded change sets (digest.articles.curation): a re-import of
# the story's file or feed item keeps the editor's value, as it keeps `withdrawn`.
EDITOR_SET = {"feature": "featured", "unfeature": "featured", "priority": "priority"}


def _row(a: Article) -> dict:
    return {
        "title": a.title, "question": a.question or None, "url": a.url,
        "published": a.published.astimezone(timezone.utc).replace(tzinfo=None),
        "sections": list(a.sections), "priority": a.priority, "featured": a.featured,
        "summary": a.summary, "body": a.body, "image": a.image or None,
        "image_alt": a.image_alt or None, "source": a.source, "updated_at": utcnow(),
    }


# What makes a stored story differ from an imported one (not when or where it came from).
_COMPARED = ("title", "question", "url", "published", "sections", "priority", "featured", "summary", "body",
             "image", "image_alt")


def save_articles(engine: Engine, items: list[Article], report: ImportReport,
                  compare: Collection[str] = ()) -> None:
    """Insert new articles and update existing ones (same id) in one transaction.

    Ids in `compare` (feed items, read again every hour) that are stored exactly as
    given are counted as unchanged and left alone; the others are updated.  A field an
    editor set (EDITOR_SET: the lead, the priority) keeps the editor's value.
    """
    ids = [a.id for a in items]
    with engine.begin() as conn:
        stored = {r.id: r for r in conn.execute(select(articles).where(articles.c.id.in_(ids)))}
        kept: dict[str, set[str]] = {}
        for article_id, action in conn.execute(
                select(article_changes.c.article_id, article_changes.c.action).distinct()
                .where(article_changes.c.article_id.in_(ids), article_changes.c.action.in_(list(EDITOR_SET)))):
            kept.setdefault(article_id, set()).add(EDITOR_SET[action])
        for a in items:
            if a.id in stored:
                row = {k: v for k, v in _row(a).items() if k not in kept.get(a.id, ())}
                if a.id in compare and all(getattr(stored[a.id], k) == row[k] for k in _COMPARED if k in row):
                    report.unchanged += 1
                    continue
                conn.execute(articles.update().where(articles.c.id == a.id).values(**row))
                report.updated += 1
            else:
                conn.execute(articles.insert().values(id=a.id, **_row(a)))
                report.imported += 1


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants (naive, as stored) where `day` starts and ends in `tz`."""
    start = datetime.combine(day, time(), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=tz)
    return (start.astimezone(timezone.utc).replace(tzinfo=None),
            end.astimezone(timezone.utc).replace(tzinfo=None))


def _article(row) -> Article:
    return Article(
        id=row.id, title=row.title, url=row.url,
        published=row.published.replace(tzinfo=timezone.utc), sections=tuple(row.sections),
        question=row.question or "", priority=row.priority, featured=bool(row.featured),
        summary=row.summary or "", body=row.body or "", image=row.image or "",
        image_alt=row.image_alt or "", source=row.source or "",
    )


def articles_published_on(engine: Engine, day: date, tz: ZoneInfo, withdrawn: bool = False) -> list[Article]:
    """The articles published on `day` in the newsletter's time zone, oldest first: those in
    the edition, or (`withdrawn`) those an editor pulled from it."""
    start, end = day_bounds(day, tz)
    q = (select(articles).where(articles.c.published >= start, articles.c.published < end,
                                articles.c.withdrawn == withdrawn)
         .order_by(articles.c.published, articles.c.id))
    with engine.connect() as conn:
        return [_article(r) for r in conn.execute(q)]


def all_articles(engine: Engine) -> list[Article]:
    with engine.connect() as conn:
        return [_article(r) for r in conn.execute(select(articles).order_by(articles.c.published, articles.c.id))]


def known_stories(engine: Engine, ids: Collection[str], urls: Collection[str]) -> tuple[set[str], dict[str, str]]:
    """Which of `ids` are stored, and the stored story (its id) at each of `urls`: a feed
    item with a new id but a known URL is that story (one story, by id, then URL)."""
    known: set[str] = set()
    at: dict[str, str] = {}
    with engine.connect() as conn:
        if ids:
            known = set(conn.execute(select(articles.c.id).where(articles.c.id.in_(list(ids)))).scalars())
        if urls:
            rows = conn.execute(select(articles.c.url, articles.c.id).where(articles.c.url.in_(list(urls)))
                                .order_by(articles.c.id.desc()))
            at = {url: article_id for url, article_id in rows}  # the lowest id wins
    return known, at


def feed_validators(engine: Engine, url: str) -> tuple[str | None, str | None]:
    """The ETag and Last-Modified of `url`'s last good import (None, None if never)."""
    with engine.connect() as conn:
        row = conn.execute(select(feeds.c.etag, feeds.c.last_modified).where(feeds.c.url == url)).first()
    return (row.etag, row.last_modified) if row else (None, None)


def remember_validators(engine: Engine, url: str, etag: str | None, last_modified: str | None) -> None:
    """Keep `url`'s validators for the next conditional request (forget them if it sent none)."""
    try:
        with engine.begin() as conn:
            conn.execute(feeds.delete().where(feeds.c.url == url))
            if etag or last_modified:
                conn.execute(feeds.insert().values(url=url, etag=etag, last_modified=last_modified,
                                                   fetched_at=utcnow()))
    except IntegrityError:
        pass  # another import of the same feed remembered them at this moment: as good as ours
