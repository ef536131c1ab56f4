"""The quality report of an edition (`digest check`): what would go wrong if it went now.

Every digest the active audience would get is checked (one per distinct resolved
section mask: one GROUP BY over subscribers, never a query per subscriber), and the
whole edition (every offered section) besides.  The edition is rendered once, as for a
send (digest.sending.Planner); each digest is assembled from its parts, and its HTML is
read with lxml.

Problems (the report fails, exit 1: `digest check && digest send` does not send):
    no-stories           the day has no story at all
    render-failed        a digest cannot be rendered
    over-clip            a digest's HTML is over Gmail's clip even without teasers
                         (measured as the send does: CLIP_BUDGET, 102 KB less room for tokens)
    no-lang              <html> has no lang
    no-preheader         no preheader, or none in the HTML
    no-unsubscribe-link  no visible unsubscribe link in the HTML
    no-list-unsubscribe  no List-Unsubscribe (with one-click) header
    link-not-https       a link that is not an absolute https URL (http://, relative)
    image-not-https      an image likewise
    image-no-alt         an image without alt text (blocked images show nothing, screen readers skip it)
    duplicate-url        two stories with one URL
    two-featured         several stories are featured; the one that leads is named
    no-summary           a story without a teaser (its title and links only)
    empty-section        an offered section with no story today that subscribers follow,
                         and how many of them that leaves with the lead only or nothing
    no-postal-address    postal_address unset (bulk-mail law wants it in every footer)
    no-base-url          DIGEST_BASE_URL unset or not https: the readers' own links lead nowhere useful
A problem the newsletter accepts (`allow`, `digest check --allow empty-section`) is
reported as a note instead.
Notes (worth knowing; the send does the defined thing, exit 0):
    lead-only, no-digest how many subscribers get only the lead story, or no email
    compacted            a digest goes without its teasers and thumbnails (it is near the clip)
    frozen               the edition is frozen: this is what is being sent
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

import lxml.html
from sqlalchemy.engine import Engine

from digest.articles.curation import lead_warning
from digest.config import Settings, section_mask
from digest.edition import load_edition
from digest.message import ONE_CLICK
from digest.render import CLIP_BUDGET, GMAIL_CLIP_BYTES, Renderer, RenderError, followed_phrase, section_title
from digest.select import Digest, Edition, lead_story, resolved_mask
from digest.sending import Planner
from digest.subscribers import store as subscriber_store
from digest.tokens import Signer

WHOLE_EDITION = "the whole edition"
PROBLEMS = ("no-stories", "render-failed", "over-clip", "no-lang", "no-preheader", "no-unsubscribe-link",
            "no-list-unsubscribe", "link-not-https", "image-not-https", "image-no-alt", "duplicate-url",
            "two-featured", "no-summary", "empty-section", "no-postal-address", "no-base-url")


class CheckError(Exception):
    """A check that cannot be asked for (an unknown code to allow)."""


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    where: str  # a story's id, a section, a digest ("digest of World and Tech"), or "settings"

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "where": self.where}


@dataclass
class Report:
    date: str
    frozen: bool = False
    stories: int = 0
    subscribers: int = 0  # active
    digests: int = 0      # distinct digests checked, the whole edition included
    problems: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)
    allowed: frozenset[str] = frozenset()  # problem codes reported as notes

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def to_dict(self) -> dict:
        return {"date": self.date, "ok": not self.problems, "frozen": self.frozen, "stories": self.stories,
                "subscribers": self.subscribers, "digests": self.digests,
                "problems": [f.to_dict() for f in self.problems], "notes": [f.to_dict() for f in self.notes]}

    def problem(self, code: str, message: str, where: str) -> None:
        _add(self.notes if code in self.allowed else self.problems, Finding(code, message, where))

    def note(self, code: str, message: str, where: str) -> None:
        _add(self.notes, Finding(code, message, where))


def _add(found: list[Finding], finding: Finding) -> None:
    if finding not in found:  # a story's problem shows in every digest holding it: listed once
        found.append(finding)


def audience(engine: Engine, settings: Settings) -> dict[int, int]:
    """Active subscribers per resolved section mask (the digest they would get): one GROUP BY."""
    counts: dict[int, int] = defaultdict(int)
    for mask, n in subscriber_store.active_by_mask(engine).items():
        counts[resolved_mask(mask, settings)] += n
    return dict(counts)


def allowed_codes(codes) -> frozenset[str]:
    """The problem codes to report as notes; CheckError names one that is not a problem."""
    unknown = [c for c in codes if c not in PROBLEMS]
    if unknown:
        raise CheckError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a problem the check "
                         f"reports; the problems are: {', '.join(PROBLEMS)}")
    return frozenset(codes)


def check_edition(engine: Engine, settings: Settings, day: date, signer: Signer, *,
                  renderer: Renderer | None = None, allow=()) -> Report:
    """The quality report of the edition of `day` (live or frozen); changes nothing.
    `allow`: problem codes the newsletter accepts, reported as notes."""
    edition = load_edition(engine, day, settings)
    people = audience(engine, settings)
    report = Report(day.isoformat(), frozen=edition.frozen, stories=len(edition.articles),
                    subscribers=sum(people.values()), allowed=allowed_codes(allow))
    _check_settings(report, settings)
    if not edition.articles:
        report.problem("no-stories", f"the edition of {day} has no stories: nothing would be sent", "edition")
        return report
    if edition.frozen:
        report.note("frozen", "the edition is frozen (its send has started): this is what is being sent", "edition")
    _check_stories(report, edition, day)
    planner = Planner(edition, settings, signer, renderer)
    everything = resolved_mask(section_mask(settings.sections), settings)
    masks = sorted(people) + ([everything] if everything not in people else [])
    for mask in masks:
        digest = planner.digest(mask)
        if digest.is_empty or not planner.sent(digest):
            continue
        report.digests += 1
        _check_digest(report, planner, digest, _digest_name(digest, settings, everything, people.get(mask, 0)))
    _check_audience(report, planner, people, settings)
    return report


def _digest_name(digest: Digest, settings: Settings, everything: int, readers: int) -> str:
    if digest.mask == everything:
        name = WHOLE_EDITION
    else:
        name = f"digest of {followed_phrase(digest.followed, settings)}" + (" (defaults)" if digest.defaulted else "")
    return name + f" ({readers} subscriber{'' if readers == 1 else 's'})"


def _check_settings(report: Report, settings: Settings) -> None:
    if not settings.postal_address:
        report.problem("no-postal-address", "postal_address is not set in digest.toml: bulk-mail law (CAN-SPAM "
                       "and the like) wants the sender's postal address in every footer", "settings")
    if not settings.base_url:
        report.problem("no-base-url", f"DIGEST_BASE_URL is not set: the readers' links (unsubscribe, preferences, "
                       f"web version) point at {settings.links_base}", "settings")
    elif not settings.base_url.startswith("https://"):
        report.problem("no-base-url", f"DIGEST_BASE_URL {settings.base_url} is not https: the readers' links "
                       "(and their tokens) would travel in the clear", "settings")


def _check_stories(report: Report, edition: Edition, day: date) -> None:
    """What the stories say, whichever digests hold them."""
    warning = lead_warning(day, list(edition.articles))
    if warning:
        report.problem("two-featured", warning, lead_story(edition.articles).id)  # type: ignore[union-attr]
    by_url: dict[str, list[str]] = defaultdict(list)
    for a in edition.articles:
        by_url[a.url].append(a.id)
        if not a.teaser:
            report.problem("no-summary", f"{a.id!r} has no summary: readers see its title and links only", a.id)
    for url, ids in by_url.items():
        if len(ids) > 1:
            report.problem("duplicate-url", f"{len(ids)} stories have the URL {url}: "
                           f"{', '.join(map(repr, ids))} (the same story twice?)", ", ".join(ids))


def _check_digest(report: Report, planner: Planner, digest: Digest, where: str) -> None:
    settings = planner.settings
    try:
        rendered = planner.rendering.render(digest)
        compact = planner.rendering.is_compact(digest)
    except RenderError as e:
        report.problem("render-failed", str(e), where)
        return
    size = len(rendered.html.encode("utf-8"))
    if size > CLIP_BUDGET:
        report.problem("over-clip", f"{size:,} bytes of HTML even without teasers: Gmail clips messages over "
                       f"{GMAIL_CLIP_BYTES // 1024} KB, hiding the unsubscribe link (lower per_section, "
                       "or shorten the stories)", where)
    elif compact:
        report.note("compacted", f"near Gmail's clip, so it goes without the section stories' teasers and "
                    f"thumbnails ({size:,} bytes of HTML)", where)
    doc = lxml.html.document_fromstring(rendered.html)
    if not (doc.get("lang") or "").strip():
        report.problem("no-lang", "<html> has no lang: screen readers guess the language", where)
    if not rendered.preheader.strip() or not any(
            rendered.preheader in (div.text_content() or "") for div in doc.iter("div")
            if "display:none" in (div.get("style") or "").replace(" ", "")):
        report.problem("no-preheader", "no preheader: inbox previews show the start of the body", where)
    unsubscribe = settings.links_base.rstrip("/") + "/unsubscribe/"
    links_base = settings.links_base.rstrip("/") + "/"
    holders: dict[str, list[str]] = defaultdict(list)  # a URL -> the stories linking to it
    for a in planner.edition.articles:
        for url in dict.fromkeys(u for u in (a.url, a.image) if u):
            holders[url].append(a.id)
    stories = {url: ", ".join(ids) for url, ids in holders.items()}
    seen_unsubscribe = False
    for link in doc.iter("a"):
        href = (link.get("href") or "").strip()
        if href.startswith(unsubscribe) and link.text_content().strip():
            seen_unsubscribe = True
        if href.startswith("#") or href.startswith(links_base):
            continue  # a contents anchor; our own links are checked once, as DIGEST_BASE_URL
        if not href.startswith("https://"):
            report.problem("link-not-https", f"a link is not an absolute https URL: {href or '(empty)'}",
                           stories.get(href, where))
    if not seen_unsubscribe:
        report.problem("no-unsubscribe-link", "no visible unsubscribe link", where)
    for img in doc.iter("img"):
        src = (img.get("src") or "").strip()
        owner = stories.get(src, where)
        if not src.startswith("https://"):
            report.problem("image-not-https", f"an image is not an absolute https URL: {src or '(empty)'}", owner)
        if not (img.get("alt") or "").strip():
            report.problem("image-no-alt", f"the image {src} has no alt text (set image_alt)", owner)
    headers = {**planner.headers, **planner.recipient(0, "check@example.com", "").headers}
    if not headers.get("List-Unsubscribe", "").startswith("<") or any(
            headers.get(k) != v for k, v in ONE_CLICK.items()):
        report.problem("no-list-unsubscribe", "no List-Unsubscribe header with one-click (RFC 8058)", where)


def _check_audience(report: Report, planner: Planner, people: dict[int, int], settings: Settings) -> None:
    """Sections with no story today, and whom that leaves with the lead only, or nothing."""
    lead_only = nothing = 0
    for mask, n in people.items():
        digest = planner.digest(mask)
        if digest.is_empty or not planner.sent(digest):
            nothing += n
        elif digest.lead_only:
            lead_only += n
    lead = lead_story(planner.edition.articles)
    filled = {s for a in planner.edition.articles if a is not lead for s in a.sections}
    for section in settings.sections:
        if section in filled:
            continue
        bit = section_mask([section])
        followers = [(planner.digest(m), n) for m, n in people.items() if m & bit]
        if not followers:
            continue
        count = sum(n for _, n in followers)
        only = sum(n for d, n in followers if d.lead_only and planner.sent(d))
        none = sum(n for d, n in followers if d.is_empty or not planner.sent(d))
        left = (f"{only} of them would get only the lead story and {none} no email" if only or none
                else "each of them has stories in other sections")
        report.problem("empty-section", f"no {section_title(section)} story today; {count} subscriber"
                    f"{'' if count == 1 else 's'} follow it: {left}", section)
    if lead_only:
        report.note("lead-only", f"{lead_only} subscriber{'' if lead_only == 1 else 's'} get only the lead "
                    "story (none of their sections has a story today)", "audience")
    if nothing:
        why = "their sections have no story today" + ("" if settings.send_lead_only or lead is None
                                                       else ", and send_lead_only is off")
        report.note("no-digest", f"{nothing} subscriber{'' if nothing == 1 else 's'} get no email: {why}",
                    "audience")

