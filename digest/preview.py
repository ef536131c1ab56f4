"""Preview: exactly the message one subscriber (or one set of sections) would get."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.engine import Engine

from digest.config import Settings, section_mask
from digest.edition import load_edition
from digest.message import build_message
from digest.render import Rendered, RenderError, personalize
from digest.select import Digest, resolved_mask
from digest.sending import Planner
from digest.subscribers import store as subscriber_store
from digest.tokens import Signer

# `sections=ALL`: the whole edition, every offered section (`--sections all`).
ALL = "all"
# Whom a preview of sections (not of a subscriber) is addressed to.  Its links carry
# subscriber id 0, which belongs to nobody, so they lead nowhere.
NOBODY_ID, NOBODY_EMAIL = 0, "preview@example.com"


class PreviewError(Exception):
    """Nothing to preview (unknown subscriber, empty digest)."""


@dataclass
class Preview:
    content: bytes  # in the asked-for format
    notes: list[str] = field(default_factory=list)  # worth telling the editor
    # The inbox line (from name, subject, preheader) and both parts, whatever the format:
    # the editors' desk shows them side by side.
    from_name: str = ""
    subject: str = ""
    preheader: str = ""
    html: str = ""
    text: str = ""


@dataclass
class Previewed:
    """One digest ready to personalize: what `preview` and test sends share."""
    planner: Planner
    digest: Digest
    rendered: Rendered  # tokens unfilled
    name: str           # the greeting's name: the subscriber's, or none
    subscriber: tuple[int, str] | None  # (id, email) of the real subscriber previewed, if one was
    notes: list[str]


def chosen_sections(sections, settings: Settings) -> tuple[str, ...]:
    """`sections` as a subscriber would have chosen them; ALL is every offered section."""
    return tuple(settings.sections) if sections == ALL else tuple(sections or ())


def prepare(engine: Engine, settings: Settings, day: date, signer: Signer, *, subscriber: str | None = None,
            sections=None, weekly: bool = False) -> Previewed:
    """The digest of `subscriber` (their sections and name) or of `sections`, rendered
    once (`weekly`: the weekly digest of the week to `day`); PreviewError when there is none to show."""
    edition = load_edition(engine, day, settings, weekly)
    notes = []
    who: tuple[int, str] | None = None
    if subscriber:
        s = subscriber_store.get(engine, email=subscriber)
        if not s:
            raise PreviewError(f"{subscriber} is not a subscriber")
        if s.status != "active":
            notes.append(f"{s.email} is {s.status}: they would get no digest today")
        who, name, chosen = (s.id, s.email), s.name, s.sections
    else:
        name, chosen = "", chosen_sections(sections, settings)
    planner = Planner(edition, settings, signer)
    mask = resolved_mask(section_mask(chosen or ()), settings)
    digest = planner.digest(mask)
    if digest.is_empty:
        raise PreviewError(f"no stories for {', '.join(digest.followed)} in {edition.key}: "
                           "this digest would not be sent")
    if not planner.sent(digest):
        notes.append(f"no story for {', '.join(digest.followed)} besides the lead, and send_lead_only "
                     "is off: this digest would not be sent")
    try:
        rendered = planner.rendered(mask)
    except RenderError as e:
        raise PreviewError(str(e)) from None
    return Previewed(planner, digest, rendered, name, who, notes)


def preview(engine: Engine, settings: Settings, day: date, signer: Signer, *, subscriber: str | None = None,
            sections=None, fmt: str = "html", weekly: bool = False) -> Preview:
    """`sections` may be ALL: the whole edition; `weekly`: the weekly digest of the week to `day`."""
    shown = prepare(engine, settings, day, signer, subscriber=subscriber, sections=sections, weekly=weekly)
    sid, email = shown.subscriber or (NOBODY_ID, NOBODY_EMAIL)
    recipient = shown.planner.recipient(sid, email, shown.name)
    message = personalize(shown.rendered, recipient.substitutions)
    if fmt == "text":
        content = message.text.encode("utf-8")
    elif fmt == "eml":
        headers = {**shown.planner.headers, **recipient.headers}
        content = build_message(message, recipient.email, recipient.name, headers, settings).as_bytes()
    else:
        content = message.html.encode("utf-8")
    return Preview(content, shown.notes, from_name=settings.sender_name, subject=message.subject,
                   preheader=message.preheader, html=message.html, text=message.text)
