"""`digest articles import`: read every source, keep the good articles, list the bad ones.

A source is a Markdown file, a folder of them (recursively), a feed file (JSON Feed, RSS,
Atom: found by content) or a feed URL; no source at all means the `[feeds] urls` of the
settings.  A feed URL is fetched conditionally: its ETag / Last-Modified from the last
good import are sent back, and a 304 imports nothing ("not modified").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from digest.articles import Article, ArticleError
from digest.articles.curation import edition_day, lead_warning
from digest.articles.feeds import FeedError, check_default_section, parse_feed, sniff
from digest.articles.fetch import FetchError, fetch, is_url
from digest.articles.markdown import find_markdown_files, parse_file
from digest.articles.repository import (
    articles_published_on,
    feed_validators,
    known_stories,
    remember_validators,
    save_articles,
)
from digest.config import ConfigError, Settings
from digest.importing import ImportReport
from digest.store import articles


@dataclass
class _Feed:
    """A feed document to read: from a file, or fetched from a URL (with its validators)."""

    source: str
    data: bytes
    base_url: str = ""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    # Keep the validators once saved: a fetched feed read whole.  One with a rejected item
    # is fetched in full next time, so a fix (a [feeds.sections] alias) takes effect.
    remember: bool = False


def import_articles(engine: Engine, paths: Iterable, settings: Settings,
                    default_section: str | None = None) -> ImportReport:
    """Import every source in `paths` (files, folders, feed URLs; none: `[feeds] urls`).

    Raises ConfigError (nothing done) when there is nothing to import or `default_section`
    is not a section.
    """
    sources = [str(p) for p in paths] or list(settings.feeds_urls)
    if not sources:
        raise ConfigError("nothing to import: name Markdown files, folders, feed files or URLs, "
                          "or list feed URLs as [feeds] urls in digest.toml")
    default = check_default_section(default_section, settings)
    report = ImportReport()
    markdown: list[Path] = []
    feeds: list[_Feed] = []
    files, report.rejected = find_markdown_files([s for s in sources if not is_url(s)])
    for path in files:
        feed = _read_if_feed(path, settings, report)
        if feed is None:
            markdown.append(path)
        elif feed.data:
            report.counts_unchanged = True
            feeds.append(feed)
    for url in (s for s in sources if is_url(s)):
        report.counts_unchanged = True
        fetched = _fetch(engine, url, settings, report)
        if fetched:
            feeds.append(fetched)

    good: list[Article] = []
    seen: dict[str, str] = {}  # id -> where it came from
    for path in markdown:
        notes: list[str] = []
        try:
            article = parse_file(path, settings, notes, default_section=default)
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

    feed_ids = _read_feeds(engine, feeds, settings, default, good, seen, report)
    if good:
        save_articles(engine, good, report, compare=feed_ids)
        _warn_withdrawn(engine, good, seen, report)
        for day in sorted({edition_day(a.published, settings) for a in good}):
            warning = lead_warning(day, articles_published_on(engine, day, settings.tz))
            if warning:
                report.warnings.append((f"edition {day}", warning))
    for feed in feeds:  # saved: the next fetch may be conditional
        if feed.remember:
            remember_validators(engine, feed.source, feed.etag, feed.last_modified)
    return report


def _fetch(engine: Engine, url: str, settings: Settings, report: ImportReport) -> _Feed | None:
    etag, last_modified = feed_validators(engine, url) if len(url) <= 2000 else (None, None)
    try:
        got = fetch(url, timeout=settings.feeds_timeout, max_bytes=settings.feeds_max_bytes,
                    etag=etag, last_modified=last_modified)
    except FetchError as e:
        report.rejected.append((url, str(e)))
        return None
    if got.not_modified:
        report.notes.append((url, "not modified"))
        return None
    return _Feed(url, got.body, base_url=got.url, content_type=got.content_type, etag=got.etag,
                 last_modified=got.last_modified, remember=len(url) <= 2000)


def _read_if_feed(path: Path, settings: Settings, report: ImportReport) -> _Feed | None:
    """The file as a feed document when its content starts like one (`{` or `<`), else
    None: a Markdown story.  A feed that cannot be read is rejected (data left empty)."""
    try:
        with path.open("rb") as f:
            data = f.read(settings.feeds_max_bytes + 1)
    except OSError:
        return None  # parse_file says why, as for any Markdown file
    if sniff(data) == "text":
        return None
    if len(data) > settings.feeds_max_bytes:
        report.rejected.append((str(path), f"too big for a feed: over the {settings.feeds_max_bytes:,}-byte cap "
                                           "([feeds] max_bytes)"))
        return _Feed(str(path), b"")
    return _Feed(str(path), data)


def _read_feeds(engine: Engine, feeds: list[_Feed], settings: Settings, default: str | None,
                good: list[Article], seen: dict[str, str], report: ImportReport) -> set[str]:
    """Read every feed's items into `good`; return their ids (compared with the store).

    The same story twice (in two feeds, or a feed and a Markdown file) is one story: by id,
    then by URL, the first one read is kept and the others count as unchanged.
    """
    parsed = []
    for feed in feeds:
        try:
            parsed.append((feed, parse_feed(feed.data, feed.source, settings, default,
                                            base_url=feed.base_url, content_type=feed.content_type)))
        except FeedError as e:
            report.rejected.append((feed.source, str(e)))
            feed.remember = False
    read = [i.article for _, items in parsed for i in items if i.article]
    stored, stored_ids = known_stories(engine, {a.id for a in read}, {a.url for a in read})
    by_url = {a.url: a.id for a in good}
    feed_ids: set[str] = set()
    for feed, items in parsed:
        for item in items:
            where = f"{feed.source}, {item.label}"
            if item.article is None:
                report.rejected.append((where, item.error))
                feed.remember = False
                continue
            report.warnings += [(where, n) for n in item.warnings]
            article = item.article
            if article.id not in seen and article.url in by_url:
                article = replace(article, id=by_url[article.url])
            elif article.id not in seen and article.id not in stored and article.url in stored_ids:
                article = replace(article, id=stored_ids[article.url])
            if article.id in seen:
                report.unchanged += 1
                continue
            seen[article.id], by_url[article.url] = where, article.id
            feed_ids.add(article.id)
            good.append(article)
    return feed_ids


def _warn_withdrawn(engine: Engine, good, seen: dict, report: ImportReport) -> None:
    """A re-imported story that an editor withdrew stays withdrawn: say so."""
    with engine.connect() as conn:
        pulled = conn.execute(select(articles.c.id).where(articles.c.id.in_([a.id for a in good]),
                                                          articles.c.withdrawn)).scalars().all()
    for article_id in pulled:
        report.warnings.append((seen[article_id], f"{article_id!r} is withdrawn from its edition and stays so "
                                                  f"(digest articles restore {article_id} puts it back)"))
