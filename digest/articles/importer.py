"""`digest articles import`: read every source, keep the good articles, list the bad ones."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from digest.articles import Article, ArticleError
from digest.articles.markdown import find_markdown_files, parse_file
from digest.articles.repository import save_articles
from digest.config import Settings
from digest.importing import ImportReport


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
    return report
