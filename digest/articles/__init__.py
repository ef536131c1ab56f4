"""Articles: the site's curated stories, whatever format they arrive in.

Every source format (one module each) produces the same `Article` value.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone


class ArticleError(ValueError):
    """One source file or entry is not a usable article; the message says why."""


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    url: str
    published: datetime  # timezone-aware, UTC
    sections: tuple[str, ...]
    question: str = ""
    priority: int = 100
    featured: bool = False
    summary: str = ""
    body: str = ""
    image: str = ""
    image_alt: str = ""
    source: str = ""

    @property
    def teaser(self) -> str:
        """A short plain-text teaser: the summary, else the body's first paragraph."""
        return shorten(self.summary or first_paragraph(self.body), 280)

    @property
    def why_it_matters(self) -> str:
        """The body's "Why it matters" paragraph, if the summary has one."""
        m = re.search(r"^#{1,6}\s*why it matters\s*#*\s*$\n+(.+?)(?:\n\s*\n|\Z)", self.body,
                      re.IGNORECASE | re.MULTILINE | re.DOTALL)
        return shorten(plain(m.group(1)), 320) if m else ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["published"] = self.published.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        d["sections"] = list(self.sections)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Article":
        d = dict(d)
        published = d["published"]
        if isinstance(published, str):
            published = datetime.fromisoformat(published)
        if published.tzinfo is None:
            published = published.replace(tzinfo=timezone.utc)
        d["published"] = published
        d["sections"] = tuple(d["sections"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def plain(markdown_text: str) -> str:
    """Markdown inline syntax reduced to plain text (links keep their words)."""
    target = r"\((?:[^()]|\([^()]*\))*\)"  # a link target, one level of parentheses inside
    t = re.sub(r"!\[([^\]]*)\]" + target, r"\1", markdown_text)
    t = re.sub(r"\[([^\]]*)\]" + target, r"\1", t)
    t = re.sub(r"<[^>]+>", "", t)
    t = re.sub(r"(\*\*|__|\*|`)", "", t)
    return " ".join(t.split())


def first_paragraph(markdown_text: str) -> str:
    for block in re.split(r"\n\s*\n", markdown_text.strip()):
        block = block.strip()
        if block and not block.startswith(("#", ">", "```", "---")):
            return plain(block)
    return ""


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:.-–—")
    return cut + "…"
