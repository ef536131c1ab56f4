"""Preview: exactly the message one subscriber (or one set of sections) would get."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.edition import load_edition
from digest.message import build_message
from digest.render import personalize
from digest.select import subscriber_sections
from digest.sending import Person, Planner
from subscribers import store as subscriber_store
from subscribers.tokens import Signer


class PreviewError(Exception):
    """Nothing to preview (unknown subscriber, empty digest)."""


@dataclass
class Preview:
    content: bytes
    notes: list[str] = field(default_factory=list)  # worth telling the editor


def preview(engine: Engine, settings: Settings, day: date, signer: Signer, *, subscriber: str | None = None,
            sections=None, fmt: str = "html") -> Preview:
    edition = load_edition(engine, day, settings)
    notes = []
    if subscriber:
        s = subscriber_store.get(engine, email=subscriber)
        if not s:
            raise PreviewError(f"{subscriber} is not a subscriber")
        if s.status != "active":
            notes.append(f"{s.email} is {s.status}: they would get no digest today")
        person = Person(s.id, s.email, s.name, subscriber_sections(s.sections, settings))
    else:
        # Not a real subscriber: id 0 belongs to nobody, so its links lead nowhere.
        person = Person(0, "preview@example.com", "", subscriber_sections(sections, settings))
    planner = Planner(edition, settings, signer)
    digest = planner.digest(person.sections)
    if digest.is_empty:
        raise PreviewError(f"no stories for {', '.join(person.sections)} on {day.isoformat()}: "
                           "this digest would not be sent")
    recipient = planner.recipient(person)
    message = personalize(planner.renderer.render(digest), recipient.substitutions)
    if fmt == "text":
        content = message.text.encode("utf-8")
    elif fmt == "eml":
        content = build_message(message, recipient.email, recipient.name, recipient.headers, settings).as_bytes()
    else:
        content = message.html.encode("utf-8")
    return Preview(content, notes)
