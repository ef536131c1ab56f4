"""Rendering: an edition's parts rendered once, each digest assembled from them.

The expensive pipeline (Jinja2 -> MJML -> HTML -> premailer) runs once per edition, over
a "catalog" document holding every part a digest can contain: masthead, intro, lead
story, each section's heading, every story in each of its sections (last or not in its
block, with or without teaser), footer.  The output is cut at element markers into
parts; a digest's HTML is then string work: the parts it needs, joined, with its
per-digest values (subject, preheader, intro line, followed sections) filled in.  The
number of MJML runs does not grow with the number of distinct section sets.

`full_render` runs the whole pipeline for one digest: the reference the assembled
result must equal byte for byte (tests/test_render.py keeps them identical).

A recipient's message differs only by the tokens in `TOKENS`, filled last (by us for
the outbox, by SendGrid's substitutions for a real send).  The name has an HTML-escaped
and a raw token; the link token is URL-safe, so one token serves HTML and text alike.
"""

from __future__ import annotations

import html
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import jinja2
from markupsafe import Markup
from mjml import mjml2html
from premailer import Premailer

from digest.articles import Article, shorten
from digest.config import Settings
from digest.select import LEADS, Digest, Edition, lead_story

TEMPLATES_DIR = Path(__file__).parent / "templates"  # digest.templates: the templates/ folder

# Per-recipient tokens: plain ASCII word characters only, because lxml (inside
# premailer) would percent-encode brackets or braces inside href attributes.
TOKENS = {
    "name_html": "__ND_NAME_HTML__",
    "name_text": "__ND_NAME_TEXT__",
    "token": "__ND_TOKEN__",
}
_TOKEN = re.compile("|".join(re.escape(t) for t in TOKENS.values()))

# Per-digest slots, filled when a digest is assembled (never reach SendGrid).
SLOTS = {
    "subject": "__ND_SLOT_SUBJECT__",
    "preheader": "__ND_SLOT_PREHEADER__",
    "intro": "__ND_SLOT_INTRO__",
    "reason": "__ND_SLOT_REASON__",  # the footer's "why you get this", naming the sections used
    "mask": "__ND_SLOT_MASK__",  # the digest's resolved section mask, in its web version's link
}
_SLOT = re.compile("|".join(re.escape(t) for t in SLOTS.values()))
_MARKER = re.compile(r'<div data-part="([^"]*)"></div>')

# A digest with more than this many sections opens with a contents line (anchors to them).
CONTENTS_FROM = 5
# Images: explicit width/height attributes (Outlook sizes by them; others keep the space).
# The lead image is full width (the 600 px body less padding), 16:9; thumbnails are 3:2.
LEAD_IMAGE = {"width": 552, "height": 311}
THUMB = {"width": 96, "height": 64}
# After the preheader: invisible filler, so inbox previews show the preheader and not
# the start of the body ("&#847;&zwnj;&nbsp;" repeated, inside MJML's hidden preview).
PREHEADER_FILLER = Markup("&#847;&zwnj;&nbsp;" * 60)

# Parts the web version leaves out (digest.web.archive): the link to itself, and the
# footer's "why you get this" with its links holding a subscriber's token (kept only for
# that subscriber's own token).
VIEW_PART, MANAGE_PART = "view", "manage"

# Light and dark are both designed (digest-dark.css): clients may pick either.
COLOR_SCHEME_META = ('<meta name="color-scheme" content="light dark">'
                     '<meta name="supported-color-schemes" content="light dark">')

GMAIL_CLIP_BYTES = 102 * 1024
# Room kept for the filled tokens (the name twice, the link token four times).
CLIP_BUDGET = GMAIL_CLIP_BYTES - 2 * 1024


class RenderError(Exception):
    """A digest cannot be rendered; its recipients fail with this reason, the run goes on."""


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
    token: str  # the signed manage token of digest.tokens, in every link

    def substitutions(self) -> dict[str, str]:
        greeting = f", {self.name}" if self.name else ""
        return {TOKENS["name_html"]: html.escape(greeting, quote=True), TOKENS["name_text"]: greeting,
                TOKENS["token"]: self.token}


def fill(template: str, substitutions: dict[str, str]) -> str:
    """Replace every token in one pass, so a value can never be re-substituted."""
    return _TOKEN.sub(lambda m: substitutions.get(m.group(0), m.group(0)), template)


def personalize(rendered: Rendered, substitutions: dict[str, str]) -> Rendered:
    """One recipient's message: the digest's message with their tokens filled."""
    return Rendered(subject=fill(rendered.subject, substitutions), preheader=rendered.preheader,
                    html=fill(rendered.html, substitutions), text=fill(rendered.text, substitutions))


def section_title(name: str) -> str:
    return "This week\u2019s lead stories" if name == LEADS else name.capitalize()


@dataclass(frozen=True)
class Variant:
    """One story as it can appear in a section block."""
    key: str
    article: Article
    last: bool
    compact: bool


@dataclass(frozen=True)
class Block:
    name: str
    variants: tuple[Variant, ...]


def variant_key(index: int, last: bool, compact: bool) -> str:
    return f"{index}.{int(last)}{int(compact)}"


class Renderer:
    """Templates and CSS, loaded once; `edition()` gives the renderer of one edition."""

    def __init__(self, settings: Settings, templates_dir: Path | None = None):
        self.settings = settings
        self.templates_dir = Path(templates_dir or TEMPLATES_DIR)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.templates_dir),
            autoescape=lambda name: bool(name and not name.endswith(".txt.j2")),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        self.env.globals["section_title"] = section_title
        self.env.filters["clip"] = shorten
        self.css = (self.templates_dir / "digest.css").read_text(encoding="utf-8")
        self.dark_css = compact_css((self.templates_dir / "digest-dark.css").read_text(encoding="utf-8"))
        self.renders = 0  # how many times MJML + premailer ran (once per edition, not per digest)
        self.oversized: list[tuple[str, int]] = []  # (subject, bytes) still over the clip size

    def edition(self, edition: Edition) -> EditionRenderer:
        return EditionRenderer(self, edition)

    # -- the expensive pipeline ---------------------------------------------------------

    def mjml(self, ctx: dict) -> str:
        """Template -> MJML -> HTML -> premailer, markers still in."""
        self.renders += 1
        source = self.env.get_template("digest.mjml.j2").render(ctx)
        return self.inline_css(mjml2html(source, disable_comments=True, fonts={}))

    def inline_css(self, html_doc: str) -> str:
        """Inline our own CSS with premailer, leaving MJML's reset and media queries alone.

        MJML's <style> blocks are marked ignore: inlining its reset onto every element
        would grow a digest by a fifth for nothing.  Our stylesheet goes in as the only
        one premailer inlines; its @media rules stay in a <style> block.  The dark scheme
        goes in as a block premailer ignores, with the color-scheme meta tags; classes
        stay on the elements, as its (and the responsive rules') hooks.
        """
        marked = html_doc.replace("<style", '<style data-premailer="ignore"')
        marked = marked.replace("</head>", f"<style>{self.css}</style>"
                                           f'<style data-premailer="ignore">{self.dark_css}</style></head>', 1)
        marked = marked.replace("<head>", "<head>" + COLOR_SCHEME_META, 1)
        out = Premailer(
            marked, allow_network=False, strip_important=False, keep_style_tags=False,
            remove_classes=False, disable_basic_attributes=["bgcolor", "width", "height"],
            cssutils_logging_level=logging.CRITICAL,
            disable_validation=True, cache_css_parsing=True,
        ).transform(pretty_print=False)
        out = out.replace(' data-premailer="ignore"', "")
        out = compact_markup(out)
        if not out.lstrip().lower().startswith("<!doctype"):
            out = "<!doctype html>" + out  # premailer drops it; without it clients use quirks mode
        return out


class EditionRenderer:
    """One edition: its parts rendered once (lazily), any digest of it assembled on demand."""

    CACHE = 16  # assembled digests kept: the send claims rows grouped by digest, so few are live

    def __init__(self, renderer: Renderer, edition: Edition):
        self.renderer = renderer
        self.settings = renderer.settings
        self.edition = edition
        self.lead = None if edition.weekly else lead_story(edition.articles)  # weekly: a block of leads
        self._index = {a.id: i for i, a in enumerate(edition.articles)}
        self._parts: dict[str, str] | None = None
        self._broken: dict[str, str] = {}  # part name -> why it could not be rendered
        self._cache: OrderedDict[tuple, Rendered] = OrderedDict()
        self._macros: jinja2.environment.TemplateModule | None = None
        self._text_parts: dict[str, str] = {}
        self._lock = threading.RLock()

    # -- parts ------------------------------------------------------------------------------

    def base_context(self) -> dict:
        s, day = self.settings, self.edition.date
        date_long = f"{day:%A} {day.day} {day:%B %Y}"
        return {"name": s.name, "lang": s.lang, "site_url": s.site_url, "links_base": s.links_base,
                "day": day.isoformat(), "weekly": self.edition.weekly,
                "date_long": f"The week to {date_long}" if self.edition.weekly else date_long,
                "lead": self.lead, "blocks": (),
                "postal_address": s.postal_address, "preheader_filler": PREHEADER_FILLER,
                "lead_image": LEAD_IMAGE, "thumb": THUMB, "contents": self.catalog_contents(),
                "t": TOKENS, "s": SLOTS}

    def catalog_contents(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """The contents line's items for the catalog: each section first (0) and later (1)."""
        names = {n for a in self.edition.articles if a is not self.lead for n in a.sections}
        leads = ((LEADS, (0, 1)),) if self.edition.leads else ()
        return leads + tuple((n, (0, 1)) for n in self.settings.sections if n in names)

    def catalog_blocks(self, only: str | None = None) -> tuple[Block, ...]:
        """Every offered section with stories, holding every variant of each of its stories."""
        blocks = []
        if self.edition.leads and only in (None, LEADS):  # weekly: the week's leads, one block first
            blocks.append(Block(LEADS, tuple(
                Variant(variant_key(self._index[a.id], last, compact), a, last, compact)
                for a in self.edition.leads
                for last in (False, True) for compact in (False, True))))
        for name in self.settings.sections:
            if only and name != only:
                continue
            variants = tuple(
                Variant(variant_key(i, last, compact), a, last, compact)
                for i, a in enumerate(self.edition.articles)
                if name in a.sections and a is not self.lead
                for last in (False, True) for compact in (False, True))
            if variants:
                blocks.append(Block(name, variants))
        return tuple(blocks)

    def parts(self) -> dict[str, str]:
        with self._lock:  # the send's threads ask at once; the pipeline must still run once
            if self._parts is None:
                self._parts = self._render_parts()
            return self._parts

    def _render_parts(self) -> dict[str, str]:
        try:
            return cut(self.renderer.mjml({**self.base_context(), "blocks": self.catalog_blocks()}))
        except Exception as e:  # noqa: BLE001 - whatever MJML or premailer raised, isolate it
            first = reason(e)
        # Something in the edition breaks the pipeline: render the frame and each section
        # on its own, so only the digests holding the broken part fail (with the reason).
        logging.getLogger(__name__).warning("the edition of %s does not render whole (%s); "
                                            "rendering its sections one by one", self.edition.date, first)
        try:
            parts = cut(self.renderer.mjml(self.base_context()))
        except Exception as e:  # noqa: BLE001
            self._broken["*"] = reason(e)
            return {}
        for block in self.catalog_blocks():
            try:
                one = cut(self.renderer.mjml({**self.base_context(), "blocks": (block,)}))
            except Exception as e:  # noqa: BLE001
                self._broken[f"section/{block.name}"] = reason(e)
                continue
            parts.update({k: v for k, v in one.items() if k.startswith(("section/", "story/", "sections"))})
        return parts

    # -- digests --------------------------------------------------------------------------

    def render(self, digest: Digest) -> Rendered:
        """The digest's message (tokens unfilled), assembled from the edition's parts."""
        key = digest.key
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        rendered = self._assemble(digest)
        with self._lock:
            self._cache[key] = rendered
            if len(self._cache) > self.CACHE:
                self._cache.popitem(last=False)
        return rendered

    def _assemble(self, digest: Digest) -> Rendered:
        parts = self.parts()
        broken = self._broken.get("*") or next(
            (self._broken[f"section/{b.name}"] for b in digest.sections if f"section/{b.name}" in self._broken), None)
        if broken:
            raise RenderError(f"the digest cannot be rendered: {broken}")
        values = digest_values(digest, self.settings)
        html_doc = self._join(parts, digest, values, compact=False)
        if len(html_doc.encode("utf-8")) > CLIP_BUDGET:
            # Gmail would clip it (hiding the unsubscribe link): drop the section stories'
            # teasers and thumbnails, keeping every story's title and links, rather than lose stories.
            html_doc = self._join(parts, digest, values, compact=True)
            size = len(html_doc.encode("utf-8"))
            if size > CLIP_BUDGET:
                self.renderer.oversized.append((values["subject"], size))
        return Rendered(values["subject"], values["preheader"], html_doc, self.text(digest, values))

    def web_html(self, digest: Digest, manage: bool) -> str:
        """The digest's HTML as its web version shows it (tokens unfilled): what the email
        holds (compact too if the email was), without the link to itself, and without the
        footer's "why you get this" and token links unless `manage`."""
        parts = self.parts()
        compact = self.is_compact(digest)  # RenderError if the email could not be rendered
        values = digest_values(digest, self.settings)
        omit = {VIEW_PART} if manage else {VIEW_PART, MANAGE_PART}
        return self._join(parts, digest, values, compact, omit=frozenset(omit))

    def is_compact(self, digest: Digest) -> bool:
        """Whether the digest's email goes without the section stories' teasers and
        thumbnails (whole, it would pass CLIP_BUDGET); RenderError if it cannot be rendered."""
        self.render(digest)
        whole = self._join(self.parts(), digest, digest_values(digest, self.settings), compact=False)
        return len(whole.encode("utf-8")) > CLIP_BUDGET

    def _join(self, parts: dict[str, str], digest: Digest, values: dict, compact: bool,
              omit: frozenset[str] = frozenset()) -> str:
        out = [parts[""], parts["masthead"]]
        if VIEW_PART not in omit:
            out.append(parts[VIEW_PART])
        out += [parts["masthead-rest"], parts["intro"]]
        if len(digest.sections) >= CONTENTS_FROM:
            out.append(parts["contents"])
            out += [parts[f"contents/{b.name}.{int(i > 0)}"] for i, b in enumerate(digest.sections)]
            out.append(parts["contents-end"])
        if digest.featured:
            out.append(parts["lead"])
        if digest.sections:
            out.append(parts["sections"])
        for block in digest.sections:
            out.append(parts[f"section/{block.name}"])
            last = len(block.stories) - 1
            out += [parts["story/" + variant_key(self._index[a.id], i == last, compact)]
                    for i, a in enumerate(block.stories)]
        if digest.sections:
            out.append(parts["sections-end"])
        out.append(parts["footer"])
        if MANAGE_PART not in omit:
            out.append(parts[MANAGE_PART])
        out += [parts["manage-end"], parts["end"]]
        return fill_slots("".join(out), values, escape=True)

    def text(self, digest: Digest, values: dict) -> str:
        """The text part, assembled from the text template's macros (each story wrapped once)."""
        m = self._text_macros()
        out = [self._text_part("head", m.head)]
        if digest.featured:
            out.append(self._text_part("lead", m.lead_story, digest.featured))
        for block in digest.sections:
            out.append(self._text_part("section/" + block.name, m.section_head, block.name))
            out += [self._text_part("story/" + a.id, m.story, a) for a in block.stories]
        out.append(self._text_part("foot", m.foot))
        return fill_slots("".join(out) + "\n", values)

    def _text_macros(self):
        with self._lock:
            if self._macros is None:
                self._macros = self.renderer.env.get_template("digest.txt.j2").make_module(
                    {**self.base_context(), "digest": _NO_DIGEST})
            return self._macros

    def _text_part(self, key: str, macro, *args) -> str:
        if key not in self._text_parts:
            self._text_parts[key] = str(macro(*args))
        return self._text_parts[key]

    def full_text(self, digest: Digest, values: dict) -> str:
        """The text template rendered whole for this digest: the reference for `text`."""
        doc = self.renderer.env.get_template("digest.txt.j2").render({**self.base_context(), "digest": digest})
        return fill_slots(doc, values)

    def full_render(self, digest: Digest) -> Rendered:
        """The whole pipeline for this one digest: the reference for the assembled result."""
        values = digest_values(digest, self.settings)

        def once(compact: bool) -> str:
            blocks = tuple(Block(b.name, tuple(
                Variant(variant_key(self._index[a.id], i == len(b.stories) - 1, compact), a,
                        i == len(b.stories) - 1, compact) for i, a in enumerate(b.stories)))
                for b in digest.sections)
            contents = tuple((b.name, (int(i > 0),)) for i, b in enumerate(digest.sections))
            ctx = {**self.base_context(), "lead": digest.featured, "blocks": blocks,
                   "contents": contents if len(contents) >= CONTENTS_FROM else ()}
            doc = _MARKER.sub("", self.renderer.mjml(ctx))
            return fill_slots(doc, values, escape=True)

        html_doc = once(False)
        if len(html_doc.encode("utf-8")) > CLIP_BUDGET:
            html_doc = once(True)
        return Rendered(values["subject"], values["preheader"], html_doc, self.full_text(digest, values))


# What the text template's body sees when only its macros are wanted.
_NO_DIGEST = {"featured": None, "sections": ()}


def fill_slots(doc: str, values: dict[str, str], escape: bool = False) -> str:
    """Put a digest's own words (digest_values) into its slots; HTML-escaped for the HTML."""
    by_slot = {SLOTS[k]: html.escape(v, quote=True) if escape else v for k, v in values.items()}
    return _SLOT.sub(lambda m: by_slot[m.group(0)], doc)


def cut(html_doc: str) -> dict[str, str]:
    """Split a rendered document at its markers: {part name: HTML up to the next marker}.

    The text before the first marker (doctype, head, preheader) is the part "".
    """
    pieces = _MARKER.split(html_doc)
    parts = {"": pieces[0]}
    for name, content in zip(pieces[1::2], pieces[2::2], strict=True):
        parts[name] = content
    return parts


_STYLE_ATTR = re.compile(r'style="([^"]*)"')
_CLASS_ATTR = re.compile(r' class="([^"]*)"')
_CSS_CLASS = re.compile(r"\.(-?[A-Za-z_][\w-]*)")
_STYLE_BLOCK = re.compile(r"<style[^>]*>(.*?)</style>", re.S)


def compact_markup(doc: str) -> str:
    """Bytes no client needs, out of a rendered document (a busy digest is near Gmail's clip):
    the spaces premailer writes between inlined declarations, and every class that no
    <style> block left in the document uses (the dark scheme's and the responsive rules'
    hooks stay).  Conditional comments for Outlook are left as they are."""
    head, sep, body = doc.partition("</head>")
    if not sep:
        return doc
    used = set(_CSS_CLASS.findall(" ".join(_STYLE_BLOCK.findall(head))))

    def classes(m: re.Match) -> str:
        kept = [c for c in m.group(1).split() if c in used]
        return f' class="{" ".join(kept)}"' if kept else ""

    def style(m: re.Match) -> str:
        return 'style="' + re.sub(r";\s+", ";", m.group(1)).rstrip(" ;") + '"'

    return head + sep + _STYLE_ATTR.sub(style, _CLASS_ATTR.sub(classes, body))


def compact_css(css: str) -> str:
    """A stylesheet without comments and runs of whitespace: it goes into every message."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    css = re.sub(r"\s+", " ", css)
    return re.sub(r"\s*([{};,>])\s*", r"\1", css).strip()


def reason(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e)[:300]}"


# -- per-digest words ------------------------------------------------------------------------

def digest_values(digest: Digest, settings: Settings) -> dict[str, str]:
    if digest.weekly:
        return weekly_values(digest, settings)
    day = digest.date
    lead = digest.featured or (digest.stories[0] if digest.stories else None)
    subject = f"{settings.name}, {day:%a} {day.day} {day:%b}"
    if lead:
        subject += f": {shorten(lead.title, 90)}"
    return {"subject": subject, "preheader": preheader(digest), "intro": intro_line(digest, settings),
            "reason": reason_line(digest, settings), "mask": str(digest.mask)}


def weekly_values(digest: Digest, settings: Settings) -> dict[str, str]:
    """The weekly digest's words: its own subject ("… — the week to Wednesday 25 November"),
    preheader and intro ("This week's lead stories, then …")."""
    day = digest.date
    subject = f"{settings.name} \u2014 the week to {day:%A} {day.day} {day:%B}"
    blocks = [b for b in digest.sections if b.name != LEADS]
    leads = next((b.stories for b in digest.sections if b.name == LEADS), ())
    stories = digest.stories
    first = stories[0] if stories else None
    head = (first.question or first.teaser or first.title) if first else ""
    titles = [section_title(b.name) for b in blocks]
    more = f" Also this week: {', '.join(titles[:4])}" + (f" and {len(titles) - 4} more." if len(titles) > 4 else ".")
    n = sum(len(b.stories) for b in blocks)
    where = ""
    if titles:
        where = f" across {len(titles)} sections" if len(titles) > 4 else " from " + and_list(titles)
    if leads:
        intro = f"This week\u2019s lead stories, then {n} more{where}." if n else "This week\u2019s lead stories."
    else:
        intro = f"Here are this week\u2019s {n} stor{'y' if n == 1 else 'ies'}{where}."
    if digest.defaulted:
        intro = f"None of your sections is offered any more, so you get " \
                f"{followed_phrase(digest.followed, settings)}. {intro}"
    return {"subject": subject, "preheader": shorten(head + (more if titles else ""), 140) if head else "",
            "intro": intro, "reason": reason_line(digest, settings).replace(
                f"receive {settings.name}", f"receive {settings.name} weekly", 1), "mask": str(digest.mask)}


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


def intro_line(digest: Digest, settings: Settings) -> str:
    """'Today's lead story, then 5 more from Tech and Science.' and the like: what really
    happened, including why a digest holds only the lead story or the default sections."""
    if digest.lead_only:
        followed = [section_title(s) for s in digest.followed]
        which = "stories in your sections" if len(followed) > 4 else " or ".join(
            [", ".join(followed[:-1]), followed[-1]] if len(followed) > 1 else followed) + " stories"
        return f"No new {which} today: here is the day\u2019s lead story."
    said = story_count_line(digest)
    if digest.defaulted:
        got = followed_phrase(digest.followed, settings)
        return f"None of your sections is offered any more, so you get {got}. {said}"
    return said


def reason_line(digest: Digest, settings: Settings) -> str:
    """The footer's why: the sections this digest was really selected for."""
    followed = followed_phrase(digest.followed, settings)
    if digest.defaulted:
        return (f"You receive {settings.name} with its default sections ({followed}): "
                "none of the sections you chose is offered any more.")
    return f"You receive {settings.name} because you follow {followed}."


def story_count_line(digest: Digest) -> str:
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
