"""Selection: which of an edition's stories one subscriber gets, and in what order.

Pure functions over values (no store, no I/O), so every rule in docs/architecture.md,
"Selection rules", is a unit test away.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

from digest.articles import Article
from digest.config import SECTIONS, Settings, mask_sections, section_mask

# A flag beside the section bits of a resolved mask (the ledger's section_mask): the
# subscriber chose sections, none of them is offered any more, so they get the defaults.
# Their digest says so, so it is a digest of its own (rows are grouped by mask).
DEFAULTED = 1 << len(SECTIONS)
# The weekly digest's first block: the week's lead stories (each day's lead, newest first),
# shown to every weekly reader whatever their sections, like the daily lead story.
LEADS = "leads"
WEEKLY_PREFIX = "weekly-"


def edition_key(day: date, weekly: bool = False) -> str:
    """The edition's key in the store (editions.date, ledger.edition, SendGrid's custom arg):
    the day (2026-11-25) for the daily edition, weekly-2026-11-25 for the week to that day."""
    return f"{WEEKLY_PREFIX}{day.isoformat()}" if weekly else day.isoformat()


@dataclass(frozen=True)
class Edition:
    """The day's curated stories (frozen once a real send starts)."""
    date: date
    articles: tuple[Article, ...]
    frozen: bool = False
    weekly: bool = False  # the week to `date`: its seven days' stories, `leads` first
    leads: tuple[Article, ...] = ()  # weekly: each day's lead story, newest day first

    @property
    def key(self) -> str:
        return edition_key(self.date, self.weekly)


@dataclass(frozen=True)
class SectionBlock:
    name: str
    stories: tuple[Article, ...]


@dataclass(frozen=True)
class Digest:
    """What one subscriber gets: the lead story, then their sections' stories."""
    date: date
    featured: Article | None
    sections: tuple[SectionBlock, ...]
    followed: tuple[str, ...]  # the sections this digest was selected for
    defaulted: bool = False  # `followed` are the defaults: none of the chosen sections is offered
    weekly: bool = False  # the weekly digest: its first block (LEADS) holds the week's lead stories

    @property
    def lead_only(self) -> bool:
        """Only the lead story (or, weekly, the week's leads): none of the followed sections has a story."""
        if self.weekly:
            return bool(self.sections) and all(b.name == LEADS for b in self.sections)
        return self.featured is not None and not self.sections

    @property
    def stories(self) -> list[Article]:
        lead = [self.featured] if self.featured else []
        return lead + [a for block in self.sections for a in block.stories]

    @property
    def is_empty(self) -> bool:
        return not self.stories

    @property
    def mask(self) -> int:
        """The resolved section mask this digest is the digest of (`digest_for_mask`'s argument)."""
        return section_mask(self.followed) | (DEFAULTED if self.defaulted else 0)

    @property
    def key(self) -> tuple:
        """Equal keys mean identical content: the unit of render caching and batching."""
        return (self.date.isoformat(), self.weekly, self.featured.id if self.featured else None,
                tuple((b.name, tuple(a.id for a in b.stories)) for b in self.sections), self.followed,
                self.defaulted)


def story_order(a: Article) -> tuple:
    return (a.priority, a.published, a.id)


def lead_story(articles) -> Article | None:
    """The featured story with the lowest priority (then earliest), if any is featured."""
    featured = sorted((a for a in articles if a.featured), key=story_order)
    return featured[0] if featured else None


def subscriber_sections(chosen, settings: Settings) -> tuple[str, ...]:
    """A subscriber's sections in canonical order; none chosen means the defaults."""
    chosen = set(chosen or ())
    picked = tuple(s for s in settings.sections if s in chosen)
    return picked or settings.default_sections


def defaulted(chosen, settings: Settings) -> bool:
    """Sections were chosen, but none of them is offered: the defaults stand in for them."""
    chosen = set(chosen or ())
    return bool(chosen) and not chosen & set(settings.sections)


def resolved_mask(chosen_mask: int, settings: Settings) -> int:
    """`subscriber_sections` on section masks, with the DEFAULTED flag
    (digest.deliver.ledger.freeze_audience does it in SQL)."""
    chosen = mask_sections(chosen_mask)
    flag = DEFAULTED if defaulted(chosen, settings) else 0
    return section_mask(subscriber_sections(chosen, settings)) | flag


def story_mask(edition: Edition, lead_counts: bool = True) -> int | None:
    """The sections with a story today; None when a lead story opens every digest (none is empty).

    With `lead_counts` false (settings.send_lead_only off), the sections with a story
    besides the lead: a digest outside them would hold the lead story only.
    """
    if edition.weekly:
        if edition.leads and lead_counts:
            return None
        leads = {a.id for a in edition.leads}
        return section_mask({s for a in edition.articles if a.id not in leads for s in a.sections})
    lead = lead_story(edition.articles)
    if lead and lead_counts:
        return None
    return section_mask({s for a in edition.articles if a is not lead for s in a.sections})


def digest_for_mask(edition: Edition, mask: int, settings: Settings) -> Digest:
    """The digest of a resolved mask (`resolved_mask`, a ledger row's section_mask)."""
    digest = select_digest(edition, mask_sections(mask), settings)
    return replace(digest, defaulted=bool(mask & DEFAULTED))


def select_digest(edition: Edition, sections, settings: Settings) -> Digest:
    fallback = defaulted(sections, settings)
    sections = subscriber_sections(sections, settings)
    if edition.weekly:
        return _weekly_digest(edition, sections, settings, fallback)
    lead = lead_story(edition.articles)
    by_section: dict[str, list[Article]] = {s: [] for s in sections}
    for article in edition.articles:
        if lead and article.id == lead.id:
            continue
        # A story in several sections goes under the first of *this subscriber's* sections.
        home = next((s for s in sections if s in article.sections), None)
        if home:
            by_section[home].append(article)
    blocks = tuple(
        SectionBlock(name, tuple(sorted(stories, key=story_order)[: settings.per_section]))
        for name, stories in by_section.items() if stories
    )
    return Digest(date=edition.date, featured=lead, sections=blocks, followed=sections, defaulted=fallback)


def week_leads(articles, tz) -> tuple[Article, ...]:
    """Each day's lead story among a week's `articles` (days in the newsletter's zone `tz`),
    newest day first: recomputed from the stories, so a frozen week needs no extra column."""
    by_day: dict[date, list[Article]] = {}
    for a in articles:
        by_day.setdefault(a.published.astimezone(tz).date(), []).append(a)
    found = (lead_story(by_day[d]) for d in sorted(by_day, reverse=True))
    return tuple(a for a in found if a is not None)


def _weekly_digest(edition: Edition, sections: tuple[str, ...], settings: Settings, fallback: bool) -> Digest:
    """The week's leads first (for everyone), then the week's other stories in the reader's
    sections, by priority then time, at most `weekly_per_section` each."""
    leads = {a.id for a in edition.leads}
    by_section: dict[str, list[Article]] = {s: [] for s in sections}
    for article in edition.articles:
        home = next((s for s in sections if s in article.sections), None)
        if home and article.id not in leads:
            by_section[home].append(article)
    blocks = ((SectionBlock(LEADS, edition.leads),) if edition.leads else ()) + tuple(
        SectionBlock(name, tuple(sorted(stories, key=story_order)[: settings.weekly_per_section]))
        for name, stories in by_section.items() if stories)
    return Digest(date=edition.date, featured=None, sections=blocks, followed=sections, defaulted=fallback,
                  weekly=True)
