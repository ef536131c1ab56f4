"""Preview: exactly the message one subscriber (or one set of sections) would get."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.engine import Engine

from digest.config import Settings, section_mask
from digest.edition import load_edition
from digest.message import build_message
from digest.render import RenderError, personalize
from digest.select import resolved_mask
from digest.sending import Planner
from digest.subscribers import store as subscriber_store
from digest.tokens import Signer


class PreviewError(Exception):
    """Nothing to preview (unknown subscriber, empty digest)."""


@dataclass
class Preview:
    content: bytes
    notes: list[str] = field(default_factory=list)  # worth telling the editor


def preview(engine: Engine, settings: Settings, day: date, signer: Signer, *, subscriber: str | None = None,
            sections=None, fmt: str = "html", weekly: bool = False) -> Preview:
    """`weekly`: the weekly digest of the week to `day`."""
    edition = load_edition(engine, day, settings, weekly)
    notes = []
    if subscriber:
        s = subscriber_store.get(engine, email=subscriber)
        if not s:
            raise PreviewError(f"{subscriber} is not a subscriber")
        if s.status != "active":
            notes.append(f"{s.email} is {s.status}: they would get no digest today")
        sid, email, name, chosen = s.id, s.email, s.name, s.sections
    else:
        # Not a real subscriber: id 0 belongs to nobody, so its links lead nowhere.
        sid, email, name, chosen = 0, "preview@example.com", "", sections
    planner = Planner(edition, settings, signer)
    mask = resolved_mask(section_mask(chosen or ()), settings)
    digest = planner.digest(mask)
    if digest.is_empty:
        raise PreviewError(f"no stories for {', '.join(digest.followed)} in {edition.key}: "
                           "this digest would not be sent")
    if not planner.sent(digest):
        notes.append(f"no story for {', '.join(digest.followed)} besides the lead, and send_lead_only "
                     "is off: this digest would not be sent")
    recipient = planner.recipient(sid, email, name)
    try:
        message = personalize(planner.rendered(mask), recipient.substitutions)
    except RenderError as e:
        raise PreviewError(str(e)) from None
    if fmt == "text":
        content = message.text.encode("utf-8")
    elif fmt == "eml":
        headers = {**planner.headers, **recipient.headers}
        content = build_message(message, recipient.email, recipient.name, headers, settings).as_bytes()
    else:
        content = message.html.encode("utf-8")
    return Preview(content, notes)
