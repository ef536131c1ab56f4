"""`digest articles import`: read every source, keep the good articles, list the bad ones."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Engine

from digest.articles import Article, ArticleError
from digest.articles.curation import lead_warning
from digest.articles.markdown import find_markdown_files, parse_file
from digest.articles.repository import articles_published_on, save_articles
from digest.config import Settings
from digest.importing import ImportReport
from digest.store import articles


def import_articles(engine: Engine, paths, settings: Settings) -> ImportReport:
    report = ImportReport()
    files, report.rejected = find_markdown_files(paths)
    good: list[Article] = []
    seen: dict[str, str] = {}  # id -> the file that has it
    for path in files:
        notes: list[str] = []
        try:
            article = parse_file(path, settings, notes)
        except ArticleError as e:
            report.rejected.append((str(path), str(e)))
            continue
        except (ValueError, OverflowError, RecursionError) as e:  # a YAML oddity we did not foresee
            report.rejected.append((str(path), f"cannot read this article: {e}"))
            continue
        if article.id in seen:
            report.rejected.append((str(path), f"id {article.id!r} is also used by {seen[article.id]}"))
            continue
        seen[article.id] = str(path)
        report.warnings += [(str(path), n) for n in notes]
        good.append(article)
    if good:
        save_articles(engine, good, report)
        _warn_withdrawn(engine, good, seen, report)
        for day in sorted({a.published.astimezone(settings.tz).date() for a in good}):
            warning = lead_warning(day, articles_published_on(engine, day, settings.tz))
            if warning:
                report.warnings.append((f"edition {day}", warning))
    return report


def _warn_withdrawn(engine: Engine, good, seen: dict, report: ImportReport) -> None:
    """A re-imported story that an editor withdrew stays withdrawn: say so."""
    with engine.connect() as conn:
        pulled = conn.execute(select(articles.c.id).where(articles.c.id.in_([a.id for a in good]),
                                                          articles.c.withdrawn)).scalars().all()
    for article_id in pulled:
        report.warnings.append((seen[article_id], f"{article_id!r} is withdrawn from its edition and stays so "
                                                  f"(digest articles restore {article_id} puts it back)"))
