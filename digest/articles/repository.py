"""Articles in the store: save (insert or update by id) and read back by day."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Engine

from digest.articles import Article
from digest.importing import ImportReport
from digest.store import articles, utcnow


def _row(a: Article) -> dict:
    return {
        "title": a.title, "question": a.question or None, "url": a.url,
        "published": a.published.astimezone(timezone.utc).replace(tzinfo=None),
        "sections": list(a.sections), "priority": a.priority, "featured": a.featured,
        "summary": a.summary, "body": a.body, "image": a.image or None,
        "image_alt": a.image_alt or None, "source": a.source, "updated_at": utcnow(),
    }


def save_articles(engine: Engine, items: list[Article], report: ImportReport) -> None:
    """Insert new articles and update existing ones (same id) in one transaction."""
    with engine.begin() as conn:
        existing = set(conn.execute(select(articles.c.id).where(articles.c.id.in_([a.id for a in items]))).scalars())
        for a in items:
            if a.id in existing:
                conn.execute(articles.update().where(articles.c.id == a.id).values(**_row(a)))
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
