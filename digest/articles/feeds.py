"""Feeds: JSON Feed 1.0/1.1, RSS 2.0 and Atom 1.0 documents, each item an `Article`.

The format is found from the content, never from a file name or a Content-Type: a JSON
object is a JSON Feed (plain JSON: the released feedparser does not read JSON Feed), an
XML document is given to feedparser (RSS 0.9x/1.0/2.0, Atom 0.3/1.0).  Every item goes
through the same rules, whatever its format:

- id: JSON Feed `id`, RSS `guid`, Atom `id`; else the item's URL.  An id longer than the
  store's 200 characters becomes a stable digest of it (`feed-<sha256 prefix>`).
- url: JSON Feed `url` (else `external_url`), RSS `link`, Atom `link rel="alternate"`,
  resolved against the feed's URL; only absolute http(s) URLs (`javascript:` is refused).
- published: JSON Feed `date_published` (else `date_modified`), RSS `pubDate`, Atom
  `published` (else `updated`); a time without a zone is the newsletter's.
- sections: the categories (RSS `category`, Atom `category term`, JSON Feed `tags`),
  compared case-insensitively with `[feeds.sections]` aliases, then with the section
  names; the others are ignored.  None left: the import's default (`--section`), else the
  item is rejected, naming its categories.
- featured: the category `featured`, or JSON Feed's `_news_digest: {"featured": true}`;
  priority and question: JSON Feed's `_news_digest: {"priority": 2, "question": "…"}`.
- summary and body: HTML (RSS description, Atom summary/content of type html, JSON Feed
  `content_html`) is sanitised by nh3 (ammonia) and read as text; a "Why it matters"
  heading, or a paragraph opening "Why it matters:", becomes the body's
  `## Why it matters` section, as in a Markdown story.  Titles are text.
- image: JSON Feed `image` (else `banner_image`), RSS/Atom `media:content`,
  `media:thumbnail` or an image enclosure; one that is not http(s) is dropped with a warning.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import feedparser  # type: ignore[import-untyped]  # no py.typed, no stubs package
import nh3

from digest.articles import Article, ArticleError
from digest.articles.markdown import MAX_ID_LENGTH, check_url, clean, show
from digest.config import SECTIONS, ConfigError, Settings
from digest.text import not_text, strip_not_text

# Field sizes past which a value is not what the field is for: a title is refused, a
# summary or body is cut (with a warning) so one hostile item cannot bloat every email.
MAX_TITLE = 500
MAX_SUMMARY = 2_000
MAX_BODY = 50_000
JSON_FEED_VERSIONS = ("https://jsonfeed.org/version/1", "https://jsonfeed.org/version/1.1")
FEATURED_CATEGORY = "featured"
EXTENSION = "_news_digest"  # JSON Feed extension: {"featured": bool, "priority": int, "question": str}


class FeedError(ValueError):
    """The document is not a feed this importer reads; the message says why."""


@dataclass
class Item:
    """One feed item, read: its article, or why it was rejected, and what is worth a look."""

    label: str  # names the item in messages: its position and id (or title)
    article: Article | None = None
    error: str = ""
    warnings: list[str] = field(default_factory=list)


def sniff(data: bytes) -> str:
    """'json', 'xml' or 'text': what the document's first character says it is."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        return "json"
    if head.startswith(b"<"):
        return "xml"
    return "text"


def parse_feed(data: bytes, source: str, settings: Settings, default_section: str | None = None,
               base_url: str = "", content_type: str = "") -> list[Item]:
    """Every item of the feed in `data`, read into an Article or a rejection.

    `source` (a path or URL) is recorded on each article; `base_url` resolves relative
    links.  Raises FeedError when `data` is no feed at all.
    """
    kind = sniff(data)
    if kind == "json":
        entries = _json_feed_entries(data)
    elif kind == "xml":
        entries = _xml_feed_entries(data, base_url, content_type)
    else:
        raise FeedError("not a feed (neither a JSON Feed nor RSS or Atom XML)")
    items = []
    for n, entry in enumerate(entries, 1):
        item = Item(label=f"item {n}")
        try:
            item.article = _article(entry, item, source, settings, default_section, base_url)
        except ArticleError as e:
            item.error = str(e)
        items.append(item)
    return items


# -- the two document kinds, read into one shape ------------------------------------------

@dataclass
class _Entry:
    """An item's fields, as found, before the rules (the same for every format)."""

    id: Any = None
    url: Any = None
    title: Any = None
    published: Any = None  # datetime, or the raw text when unreadable
    published_key: str = "published"
    categories: list[str] = field(default_factory=list)
    summary_html: str = ""
    summary_text: str = ""
    content_html: str = ""
    content_text: str = ""
    images: list[str] = field(default_factory=list)
    extension: Any = None


def _json_feed_entries(data: bytes) -> list[_Entry]:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise FeedError(f"a JSON Feed must be UTF-8 (byte {e.start} is not)") from None
    except (ValueError, RecursionError) as e:
        raise FeedError(f"not valid JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("version"), str) \
            or doc["version"].rstrip("/") not in JSON_FEED_VERSIONS:
        raise FeedError("JSON, but not a JSON Feed (no \"version\": \"https://jsonfeed.org/version/1.1\")")
    raw_items = doc.get("items")
    if not isinstance(raw_items, list):
        raise FeedError("a JSON Feed without an \"items\" list")
    entries = []
    for raw in raw_items:
        if not isinstance(raw, dict):
            entries.append(_Entry(title=raw))  # rejected by the rules: no id, url or title
            continue
        tags = raw.get("tags")
        entries.append(_Entry(
            id=raw.get("id"), url=raw.get("url") or raw.get("external_url"), title=raw.get("title"),
            published=raw.get("date_published") or raw.get("date_modified"),
            published_key="date_published" if raw.get("date_published") else "date_modified",
            categories=[t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [],
            # JSON Feed's summary is plain text by the spec; read as HTML all the same, as
            # feeds put markup there (and text comes out of the sanitiser as it went in).
            summary_html=raw["summary"] if isinstance(raw.get("summary"), str) else "",
            content_html=raw["content_html"] if isinstance(raw.get("content_html"), str) else "",
            content_text=raw["content_text"] if isinstance(raw.get("content_text"), str) else "",
            images=[u for u in (raw.get("image"), raw.get("banner_image")) if isinstance(u, str) and u],
            extension=raw.get(EXTENSION),
        ))
    return entries


def _xml_feed_entries(data: bytes, base_url: str, content_type: str) -> list[_Entry]:
    # Only the Content-Type (its charset) goes to feedparser, not the URL: links are resolved
    # here, and a guid that is not a URL must stay the same wherever the feed was read from.
    headers = {"content-type": content_type} if content_type else {}
    # A stream, never bytes or str: feedparser fetches a string that looks like a URL or path.
    doc = feedparser.parse(io.BytesIO(data), response_headers=headers)
    if not doc.get("version"):
        problem = doc.get("bozo_exception")
        raise FeedError("not an RSS or Atom feed" + (f" ({problem})" if problem else ""))
    entries = []
    for e in doc.entries:
        published = e.get("published_parsed") or e.get("updated_parsed")
        when: Any = (datetime.fromtimestamp(calendar.timegm(published), timezone.utc) if published
                     else e.get("published") or e.get("updated"))
        content = next((c for c in e.get("content", []) if c.get("value")), None)
        summary_detail = e.get("summary_detail") or {}
        summary_is_html = "html" in (summary_detail.get("type") or "text/html")
        images = [m.get("url") for m in e.get("media_content", []) + e.get("media_thumbnail", [])
                  if m.get("url") and m.get("medium", "image") == "image"]
        images += [link.get("href") for link in e.get("links", [])
                   if link.get("rel") == "enclosure" and (link.get("type") or "").startswith("image/")]
        alternate = next((link.get("href") for link in e.get("links", [])
                          if link.get("rel") == "alternate" and link.get("href")), None)
        entries.append(_Entry(
            id=e.get("id"), url=alternate or e.get("link"), title=e.get("title"),
            published=when, published_key="pubDate" if doc.version.startswith("rss") else "published",
            categories=[t.get("term") or t.get("label") or "" for t in e.get("tags", [])],
            summary_html=(e.get("summary") or "") if summary_is_html else "",
            summary_text="" if summary_is_html else (e.get("summary") or ""),
            content_html=content["value"] if content and "html" in (content.get("type") or "") else "",
            content_text=content["value"] if content and "html" not in (content.get("type") or "") else "",
            images=[u for u in images if isinstance(u, str)],
        ))
    return entries


# -- the rules: one entry -> one Article ----------------------------------------------------

def _article(entry: _Entry, item: Item, source: str, settings: Settings, default_section: str | None,
             base_url: str) -> Article:
    notes = item.warnings
    for name in (entry.id, entry.url, entry.title):
        if isinstance(name, (str, int)) and not isinstance(name, bool) and str(name).strip():
            item.label += f" {show(' '.join(strip_not_text(str(name)).split()))}"
            break
    url = _text(entry.url, "url")
    if not url:
        raise ArticleError("no link (the item's url)")
    if not_text(url):
        raise ArticleError(f"the link contains characters that are not text ({not_text(url)})")
    url = check_url(urljoin(base_url, url) if base_url else url, "url")

    raw_id = _text(entry.id, "id") or url
    if not_text(raw_id):
        raise ArticleError(f"the id contains characters that are not text ({not_text(raw_id)})")
    article_id = raw_id if len(raw_id) <= MAX_ID_LENGTH else "feed-" + hashlib.sha256(raw_id.encode()).hexdigest()[:40]

    # Titles are text: RSS and Atom titles are often escaped HTML, and a JSON Feed's may
    # carry markup it should not, so each goes through the sanitiser and comes out text.
    title = html_to_text(clean(_text(entry.title, "title"), "'title'", notes))
    if not title:
        raise ArticleError("no title")
    if len(title) > MAX_TITLE:
        raise ArticleError(f"the title is longer than {MAX_TITLE} characters")

    published = _published(entry, settings)
    sections, featured = _sections(entry.categories, settings, default_section)

    body = _body(entry, notes)
    summary = ""
    if entry.content_html or entry.content_text:  # the summary is a teaser beside the content
        summary = " ".join((html_to_text(entry.summary_html) if entry.summary_html else entry.summary_text).split())
    summary = clean(summary, "'summary'", notes)
    if len(summary) > MAX_SUMMARY:
        notes.append(f"'summary' cut to {MAX_SUMMARY} characters")
        summary = summary[:MAX_SUMMARY]

    image = ""
    for candidate in entry.images:
        try:
            image = check_url(urljoin(base_url, candidate) if base_url else candidate, "image")
            if not_text(image):
                raise ArticleError("'image' contains characters that are not text")
            break
        except ArticleError as e:
            notes.append(f"image dropped: {e}")
            image = ""

    priority, question = 100, ""
    ext = entry.extension
    if ext is not None:
        if not isinstance(ext, dict):
            raise ArticleError(f"'{EXTENSION}' must be an object like {{\"featured\": true, \"priority\": 1}}")
        if "featured" in ext:
            if not isinstance(ext["featured"], bool):
                raise ArticleError(f"'{EXTENSION}.featured' must be true or false, not {show(ext['featured'])}")
            featured = ext["featured"]
        if "priority" in ext:
            p = ext["priority"]
            if isinstance(p, bool) or not isinstance(p, int) or not -10**9 <= p <= 10**9:
                raise ArticleError(f"'{EXTENSION}.priority' must be a whole number (within ±1,000,000,000), "
                                   f"not {show(p)}")
            priority = p
        if isinstance(ext.get("question"), str):
            question = " ".join(clean(ext["question"], f"'{EXTENSION}.question'", notes).split())[:MAX_TITLE]

    return Article(id=article_id, title=title, url=url, published=published, sections=sections,
                   question=question, priority=priority, featured=featured, summary=summary, body=body,
                   image=image, source=source)


def _text(value: Any, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ArticleError(f"'{key}' must be text, not {show(value)}")
    return str(value).strip()


def _published(entry: _Entry, settings: Settings) -> datetime:
    value = entry.published
    if isinstance(value, datetime):
        return value
    if not value:
        raise ArticleError("no publication date (date_published, pubDate or published)")
    if not isinstance(value, str):
        raise ArticleError(f"'{entry.published_key}' must be a date-time, not {show(value)}")
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ArticleError(f"'{entry.published_key}' is not a date-time: {show(value)}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=settings.tz)
    try:
        return when.astimezone(timezone.utc)
    except OverflowError:
        raise ArticleError(f"'{entry.published_key}' is out of range: {show(value)}") from None


def check_default_section(section: str | None, settings: Settings) -> str | None:
    """The import's default section (`--section`), checked against the site's sections."""
    if section is None:
        return None
    return settings.check_site_sections([section], "--section")[0] if section.strip() else None


def _sections(categories: list[str], settings: Settings, default: str | None) -> tuple[tuple[str, ...], bool]:
    aliases = dict(settings.feeds_sections)
    found, featured = [], False
    for category in categories:
        key = " ".join(str(category).split()).casefold()
        if key == FEATURED_CATEGORY:
            featured = True
        elif key in aliases:
            found.append(aliases[key])
        elif key in SECTIONS:
            found.append(key)
    if not found and default:
        found = [default]
    if not found:
        named = [c for c in categories if c.strip()]
        shown = ", ".join(show(c) for c in named[:10]) if named else "none"
        raise ArticleError(f"no category maps to a section (categories: {shown}); map them in [feeds.sections] "
                           f"of digest.toml, or give a default with --section")
    try:
        return settings.check_site_sections(found, "sections"), featured
    except ConfigError as e:  # an alias is checked by the settings loader; this is a belt for the braces
        raise ArticleError(str(e)) from None


def _body(entry: _Entry, notes: list[str]) -> str:
    """The item's text as Markdown-like paragraphs, with a "## Why it matters" heading."""
    if entry.content_text:
        blocks = _text_blocks(entry.content_text)
    elif entry.content_html:
        blocks = _html_blocks(entry.content_html)
    elif entry.summary_html:
        blocks = _html_blocks(entry.summary_html)
    else:
        blocks = _text_blocks(entry.summary_text)
    body = clean("\n\n".join(_why_it_matters(blocks)), "the body", notes)
    if len(body) > MAX_BODY:
        notes.append(f"the body cut to {MAX_BODY} characters")
        body = body[:MAX_BODY]
    return body


_WHY = re.compile(r"(?:#{1,6}\s*)?why it matters\s*(?:[:.—–-]\s*(.*))?", re.IGNORECASE | re.DOTALL)


def _why_it_matters(blocks: list[str]) -> list[str]:
    """A "Why it matters" heading, or a paragraph opening "Why it matters:", as `## Why it matters`."""
    out = []
    for block in blocks:
        m = _WHY.fullmatch(block)
        if m:
            out.append("## Why it matters")
            if (m.group(1) or "").strip():
                out.append(m.group(1).strip())
        else:
            out.append(block)
    return out


def _text_blocks(text: str) -> list[str]:
    blocks = []
    for para in re.split(r"\n\s*\n", text.strip()):
        first, _, rest = para.strip().partition("\n")
        heading = _WHY.fullmatch(first.strip())
        if heading and not heading.group(1) and rest.strip():
            blocks += [first.strip(), " ".join(rest.split())]  # a heading line over its paragraph
        elif para.strip():
            blocks.append(" ".join(para.split()))
    return blocks


# Block-level tags kept through the sanitiser, so paragraphs and headings survive into text.
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCKS = _HEADINGS | {"p", "div", "li", "blockquote", "pre", "tr", "ul", "ol", "table", "section",
                       "article", "header", "footer", "figure", "figcaption", "dd", "dt", "br"}


class _Blocks(HTMLParser):
    """Reads nh3's sanitised output (only block tags, no attributes) into text blocks;
    the stdlib parser decodes the entities (`convert_charrefs`)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.current: list[str] = []
        self.heading = False

    def flush(self) -> None:
        text = " ".join("".join(self.current).split())
        if text:
            self.blocks.append(("## " if self.heading else "") + text)
        self.current, self.heading = [], False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _BLOCKS:
            self.flush()
            self.heading = tag in _HEADINGS

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS:
            self.flush()

    def handle_data(self, data: str) -> None:
        self.current.append(data)


def _html_blocks(fragment: str) -> list[str]:
    # nh3 drops every tag but the block ones, every attribute, comments, and the contents
    # of script and style; what is left is escaped text between harmless tags.
    parser = _Blocks()
    parser.feed(nh3.clean(fragment, tags=_BLOCKS, attributes={}, strip_comments=True, link_rel=None))
    parser.close()
    parser.flush()
    return parser.blocks


def html_to_text(fragment: str) -> str:
    """An HTML fragment (a title, a summary) as one line of plain text."""
    return " ".join(" ".join(b.removeprefix("## ") for b in _html_blocks(fragment)).split())
