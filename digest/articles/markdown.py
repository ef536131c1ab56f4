"""Markdown articles: YAML front matter between `---` lines, then the summary's body."""

from __future__ import annotations

import os
import re
from datetime import date, datetime, time, timezone
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import yaml

from digest.articles import Article, ArticleError
from digest.config import ConfigError, Settings
from digest.text import not_text, strip_not_text


class _FrontMatterLoader(yaml.SafeLoader):
    """SafeLoader that leaves timestamps as strings, so we parse (and report) them ourselves."""


_FrontMatterLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*\r?$\n?(.*)\Z", re.DOTALL | re.MULTILINE)


def find_markdown_files(paths) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files and folders (recursively) into .md files; missing paths are problems."""
    files, problems, seen = [], [], set()
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in (".md", ".markdown") and f.is_file())
        elif p.is_file():
            found = [p]
        else:
            why = "not a regular file (a pipe or device?)" if p.exists() else "no such file or folder"
            problems.append((str(p), why))
            continue
        for f in found:  # overlapping arguments (a folder and a file in it) read a file once
            if f.resolve() not in seen:
                seen.add(f.resolve())
                files.append(f)
    return files, problems


# The store's articles.id column (String(200)): PostgreSQL refuses a longer value (SQLite
# would keep it), so a long id, often a long file name, is this file's error, not the import's.
MAX_ID_LENGTH = 200
KNOWN_KEYS = {"id", "section", "sections", "title", "question", "url", "published", "priority",
              "featured", "summary", "image", "image_alt"}


def parse_file(path: Path, settings: Settings, warnings: list | None = None,
               default_section: str | None = None) -> Article:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ArticleError(f"cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ArticleError(f"not UTF-8 text (byte {e.start})") from None
    if "\x00" in text:
        raise ArticleError("not a text file")
    # A file name that is not UTF-8 reaches us with surrogates, which no database stores:
    # show its odd bytes as U+FFFD instead.
    source = os.fsencode(path).decode("utf-8", "replace")
    return parse_text(text, default_id=Path(source).stem, settings=settings, source=source, warnings=warnings,
                      default_section=default_section)


def parse_text(text: str, default_id: str, settings: Settings, source: str = "",
               warnings: list | None = None, default_section: str | None = None) -> Article:
    m = _FRONT_MATTER.match(text)
    if not m:
        raise ArticleError("no front matter (the file must start with a '---' line and close it with another)")
    try:
        meta = yaml.load(m.group(1), Loader=_FrontMatterLoader)
    except yaml.reader.ReaderError as e:  # a raw control character: YAML allows none
        raise ArticleError(raw_character_problem(m.group(1), e)) from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 2}" if where else ""
        raise ArticleError(f"broken front matter{line}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(meta, dict):
        raise ArticleError("front matter is not a list of 'key: value' lines")
    notes = warnings if warnings is not None else []
    # A misspelt `featurd:` would otherwise pass unseen.
    notes += [f"unknown key '{k}' ignored (known: {', '.join(sorted(KNOWN_KEYS))})"
              for k in sorted(map(str, meta)) if k not in KNOWN_KEYS]
    body = clean(m.group(2).strip(), "the body", notes)

    def text_field(key, required=False, cleanable=True) -> str:
        """A one-line text value.  Characters that are not text (from YAML escapes such as
        "\a" or "\ud800") are removed with a warning, or refused in an id or URL,
        where removing them would quietly make another key."""
        value = meta.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise ArticleError(f"missing '{key}'")
            return ""
        if isinstance(value, (dict, list)):
            raise ArticleError(f"'{key}' must be text")
        value = str(value)
        if not cleanable and not_text(value):
            raise ArticleError(f"'{key}' contains characters that are not text ({not_text(value)})")
        return " ".join(clean(value, f"'{key}'", notes).split())

    article_id = text_field("id", cleanable=False) or default_id
    if not_text(article_id):
        raise ArticleError(f"the id {article_id!r} contains characters that are not text; give an 'id'")
    if len(article_id) > MAX_ID_LENGTH:
        raise ArticleError(f"the id is longer than {MAX_ID_LENGTH} characters; give a shorter 'id'")
    title = text_field("title", required=True)
    if not title:
        raise ArticleError("'title' has no text left once the characters that are not text are removed")
    url = check_url(text_field("url", required=True, cleanable=False), "url")
    published = parse_published(meta.get("published"), settings.tz)

    raw_sections, section_key = [], "section"
    for key in ("section", "sections"):
        value = meta.get(key)
        if value is None:
            continue
        section_key = key
        if isinstance(value, str):
            raw_sections += [s for s in re.split(r"[,;\s]+", value) if s]
        elif isinstance(value, list) and all(isinstance(s, str) for s in value):
            raw_sections += value
        else:
            raise ArticleError(f"'{key}' must be a section name or a list of them")
    if not raw_sections and default_section:
        raw_sections = [default_section]  # the import's --section
    if not raw_sections:
        raise ArticleError("missing 'section' (or 'sections')")
    try:
        # Any of the site's sections is valid even if this newsletter offers fewer.
        sections = settings.check_site_sections(raw_sections, f"'{section_key}'")
    except ConfigError as e:
        raise ArticleError(str(e)) from None

    priority = meta.get("priority", 100)
    if isinstance(priority, str) and priority.strip().lstrip("-").isdigit():
        priority = int(priority)  # "2" in quotes is still clearly a number
    if isinstance(priority, bool) or not isinstance(priority, int) or not -10**9 <= priority <= 10**9:
        raise ArticleError(f"'priority' must be a whole number (within ±1,000,000,000), not {show(priority)}")
    featured = meta.get("featured", False)
    if isinstance(featured, str) and featured.strip().lower() in ("true", "false"):
        featured = featured.strip().lower() == "true"  # "true" in quotes is still clearly meant
    if not isinstance(featured, bool):
        raise ArticleError(f"'featured' must be true or false, not {show(featured)}")
    image = text_field("image", cleanable=False)
    if image:
        image = check_url(image, "image")

    return Article(
        id=article_id, title=title, url=url, published=published, sections=sections,
        question=text_field("question"), priority=priority, featured=featured,
        summary=text_field("summary"), body=body, image=image,
        image_alt=text_field("image_alt"), source=source,
    )


def clean(value: str, what: str, notes: list) -> str:
    """`value` without the characters that are not text, noting which ones went."""
    removed = not_text(value)
    if not removed:
        return value
    notes.append(f"{what}: removed characters that are not text ({removed})")
    return strip_not_text(value)


def raw_character_problem(front_matter: str, e: yaml.reader.ReaderError) -> str:
    """A raw control character in the front matter, with its line and key."""
    line_no = front_matter[:e.position].count("\n")
    line = front_matter.splitlines()[line_no] if front_matter.splitlines() else ""
    key = line.split(":", 1)[0].strip() if ":" in line else ""
    where = f"'{key}' (front matter line {line_no + 2})" if key else f"front matter line {line_no + 2}"
    char = e.character if isinstance(e.character, str) else chr(e.character or 0)
    return (f"{where} has the control character U+{ord(char):04X}, which YAML does not allow: "
            "remove it (or write it as an escape in double quotes, and it will be removed)")


def show(value) -> str:
    """A value for an error message: scalars quoted and cut short, containers only named."""
    if isinstance(value, (list, dict)):
        return f"a {'list' if isinstance(value, list) else 'map'}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "…"


def check_url(value: str, key: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or " " in value:
        raise ArticleError(f"'{key}' must be an absolute http(s) URL, not {show(value)}")
    return value


def parse_published(value, tz: ZoneInfo) -> datetime:
    """ISO 8601 date-time; without a zone it is in the newsletter's time zone."""
    if value is None or value == "":
        raise ArticleError("missing 'published'")
    if isinstance(value, (datetime, date)):
        value = value.isoformat()
    if not isinstance(value, (str, int, float)):
        # Never str() a list or map: YAML aliases can make a tiny file expand without end.
        raise ArticleError("'published' must be a date-time like 2026-11-25T06:10:00Z, not a list or map")
    try:
        when = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise ArticleError(f"'published' is not an ISO 8601 date-time: {show(value)}") from None
    if isinstance(when, date) and not isinstance(when, datetime):
        when = datetime.combine(when, time())
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    try:
        return when.astimezone(timezone.utc)
    except OverflowError:
        raise ArticleError(f"'published' is out of range: {show(value)}") from None
