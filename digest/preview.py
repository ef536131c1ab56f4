"""Preview: exactly the message one subscriber (or one set of sections) would get."""

from __future__ import annotations

from datetime import date

from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.edition import load_edition
from digest.message import build_message
from digest.render import personalize
from digest.select import select_digest, subscriber_sections
from digest.sending import Person, Planner
from subscribers import store as subscriber_store
from subscribers.tokens import Signer


class PreviewError(Exception):
    """Nothing to preview (unknown subscriber, empty digest)."""


def preview(engine: Engine, settings: Settings, day: date, signer: Signer, *, subscriber: str | None = None,
            sections=None, fmt: str = "html") -> bytes:
    edition = load_edition(engine, day, settings)
    if subscriber:
        s = subscriber_store.get(engine, email=subscriber)
        if not s:
            raise PreviewError(f"{subscriber} is not a subscriber")
        person = Person(s.id, s.email, s.name, subscriber_sections(s.sections, settings))
    else:
        # Not a real subscriber: id 0 belongs to nobody, so its links lead nowhere.
        person = Person(0, "preview@example.com", "", subscriber_sections(sections, settings))
    digest = select_digest(edition, person.sections, settings)
    if digest.is_empty:
        raise PreviewError(f"no stories for {', '.join(person.sections)} on {day.isoformat()}: "
                           "this digest would not be sent")
    planner = Planner(edition, settings, signer)
    recipient = planner.recipient(person)
    message = personalize(planner.renderer.render(digest), recipient.substitutions)
    if fmt == "text":
        return message.text.encode("utf-8")
    if fmt == "eml":
        return build_message(message, recipient.email, recipient.name, recipient.headers, settings).as_bytes()
    return message.html.encode("utf-8")
