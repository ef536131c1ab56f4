"""Rendering: Digest -> Message template (subject, preheader, HTML, text), then tokens filled.

The expensive part (Jinja2 -> MJML -> HTML -> premailer) runs once per distinct digest
and is cached by the digest's key; a subscriber's message differs only by the tokens in
`TOKENS`, filled last.  HTML tokens get HTML-escaped values and text tokens raw ones,
which is why each value has two tokens.  The same tokens are SendGrid substitution keys.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
from mjml import mjml2html
from premailer import Premailer

from digest.articles import shorten
from digest.config import Settings
from digest.select import Digest

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

# Per-recipient tokens: plain ASCII word characters only, because lxml (inside
# premailer) would percent-encode brackets or braces inside href attributes.
TOKENS = {
    "greeting_html": "__ND_GREETING_HTML__",
    "greeting_text": "__ND_GREETING_TEXT__",
    "preferences_url_html": "__ND_PREFERENCES_URL_HTML__",
    "preferences_url_text": "__ND_PREFERENCES_URL_TEXT__",
    "unsubscribe_url_html": "__ND_UNSUBSCRIBE_URL_HTML__",
    "unsubscribe_url_text": "__ND_UNSUBSCRIBE_URL_TEXT__",
}

_TOKEN = re.compile("|".join(re.escape(t) for t in TOKENS.values()))

GMAIL_CLIP_BYTES = 102 * 1024
# Room kept for the filled tokens (two links and the greeting, twice each).
CLIP_BUDGET = GMAIL_CLIP_BYTES - 4 * 1024


@dataclass(frozen=True)
class Rendered:
    """One digest's message with per-recipient tokens still in it."""
    subject: str
    preheader: str
    html: str
    text: str


@dataclass(frozen=True)
class Personal:
    """The per-recipient values of one message."""
    name: str
    preferences_url: str
    unsubscribe_url: str

    def substitutions(self) -> dict[str, str]:
        greeting = f"Good morning, {self.name}" if self.name else "Good morning"
        raw = {
            "greeting": greeting,
            "preferences_url": self.preferences_url,
            "unsubscribe_url": self.unsubscribe_url,
        }
        subs = {}
        for key, value in raw.items():
            subs[TOKENS[f"{key}_html"]] = html.escape(value, quote=True)
            subs[TOKENS[f"{key}_text"]] = value
        return subs


def fill(template: str, substitutions: dict[str, str]) -> str:
    """Replace every token in one pass, so a value can never be re-substituted."""
    return _TOKEN.sub(lambda m: substitutions.get(m.group(0), m.group(0)), template)


def personalize(rendered: Rendered, substitutions: dict[str, str]) -> Rendered:
    """One recipient's message: the digest's message with their tokens filled."""
    return Rendered(subject=fill(rendered.subject, substitutions), preheader=rendered.preheader,
                    html=fill(rendered.html, substitutions), text=fill(rendered.text, substitutions))


def section_title(name: str) -> str:
    return name.capitalize()


class Renderer:
    def __init__(self, settings: Settings, templates_dir: Path | None = None):
        self.settings = settings
        self.templates_dir = Path(templates_dir or TEMPLATES_DIR)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.templates_dir),
            autoescape=lambda name: bool(name) and not name.endswith(".txt.j2"),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        self.env.globals["section_title"] = section_title
        self.env.filters["clip"] = shorten
        self.css = (self.templates_dir / "digest.css").read_text(encoding="utf-8")
        self._cache: dict[tuple, Rendered] = {}
        self.renders = 0  # how many times the full pipeline ran (tests check "once per digest")
        self.oversized: list[tuple[str, int]] = []  # (subject, bytes) still over the clip size

    def render(self, digest: Digest) -> Rendered:
        key = digest.key
        if key not in self._cache:
            self._cache[key] = self._render(digest)
            self.renders += 1
        return self._cache[key]

    # -- the once-per-digest pipeline ---------------------------------------------------

    def context(self, digest: Digest) -> dict:
        s = self.settings
        lead = digest.featured or (digest.stories[0] if digest.stories else None)
        day = digest.date
        date_long = f"{day:%A} {day.day} {day:%B %Y}"
        subject = f"{s.name}, {day:%a} {day.day} {day:%b}"
        if lead:
            subject += f": {shorten(lead.title, 90)}"
        preheader = self.preheader(digest)
        return {
            "name": s.name, "lang": s.lang, "site_url": s.site_url, "digest": digest,
            "subject": subject, "preheader": preheader, "date_long": date_long,
            "story_count": len(digest.stories),
            "section_titles": [section_title(b.name) for b in digest.sections],
            "intro": intro_line(digest),
            "followed_titles": followed_phrase(digest.followed, s),
            "t": TOKENS, "compact": False,
        }

    @staticmethod
    def preheader(digest: Digest) -> str:
        lead = digest.featured or (digest.stories[0] if digest.stories else None)
        if not lead:
            return ""
        first = lead.question or lead.teaser or lead.title
        others = [section_title(b.name) for b in digest.sections]
        more = ""
        if others:
            more = f" Also today: {', '.join(others[:4])}" + (f" and {len(others) - 4} more." if len(others) > 4 else ".")
        return shorten(first + more, 140)

    def _render(self, digest: Digest) -> Rendered:
        ctx = self.context(digest)
        html_doc = self.mjml_to_html(self.env.get_template("digest.mjml.j2").render(ctx))
        if len(html_doc.encode("utf-8")) > CLIP_BUDGET:
            # Gmail would clip it (hiding the unsubscribe link): drop the section stories'
            # teasers, keeping every story's title and link, rather than lose stories.
            ctx["compact"] = True
            html_doc = self.mjml_to_html(self.env.get_template("digest.mjml.j2").render(ctx))
            size = len(html_doc.encode("utf-8"))
            if size > CLIP_BUDGET:
                self.oversized.append((ctx["subject"], size))
        text = self.env.get_template("digest.txt.j2").render(ctx)
        return Rendered(subject=ctx["subject"], preheader=ctx["preheader"], html=html_doc, text=text)

    def mjml_to_html(self, mjml_source: str) -> str:
        result = mjml2html(mjml_source, disable_comments=True, fonts={})
        return self.inline_css(result)

    def inline_css(self, html_doc: str) -> str:
        """Inline our own CSS with premailer, leaving MJML's reset and media queries alone.

        MJML's <style> blocks are marked ignore: inlining its reset onto every element
        would grow a digest by a fifth for nothing.  Our stylesheet goes in as the only
        one premailer inlines; its @media rules stay in a <style> block.
        """
        marked = html_doc.replace("<style", '<style data-premailer="ignore"')
        marked = marked.replace("</head>", f"<style>{self.css}</style></head>", 1)
        out = Premailer(
            marked, allow_network=False, strip_important=False, keep_style_tags=False,
            remove_classes=True, cssutils_logging_level=logging.CRITICAL,
            disable_validation=True, cache_css_parsing=True,
        ).transform(pretty_print=False)
        out = out.replace(' data-premailer="ignore"', "")
        if not out.lstrip().lower().startswith("<!doctype"):
            out = "<!doctype html>" + out  # premailer drops it; without it clients use quirks mode
        return out


def intro_line(digest: Digest) -> str:
    """'Today's lead story, then 5 more from Tech and Science.' and the like."""
    titles = [section_title(b.name) for b in digest.sections]
    n = sum(len(b.stories) for b in digest.sections)
    where = ""
    if titles:
        where = f" across {len(titles)} sections" if len(titles) > 4 else " from " + and_list(titles)
    stories = f"{n} stor{'y' if n == 1 else 'ies'}"
    if digest.featured:
        return f"Today\u2019s lead story, then {n} more{where}." if n else "Today\u2019s lead story."
    return f"Here are today\u2019s {stories}{where}."


def followed_phrase(sections, settings: Settings) -> str:
    if set(sections) == set(settings.sections):
        return "every section"
    return and_list([section_title(s) for s in sections])


def and_list(names: list[str]) -> str:
    """'Tech', 'Tech and Food', 'World, Tech and Food'."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
