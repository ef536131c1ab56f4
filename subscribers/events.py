"""SendGrid's events (its Event Webhook): what each one means for a subscriber and the ledger.

    bounce (hard)                      -> bounced
    spamreport                         -> complained
    unsubscribe, group_unsubscribe     -> unsubscribed
    dropped, by reason                 -> bounced | complained | unsubscribed
    any event of an edition's message  -> the ledger's `unknown` row becomes `sent`
      (processed, delivered, bounce, dropped, deferred, ...: SendGrid took the request)

Every event is applied at most once (`webhook_events`, keyed by `sg_event_id`).  The web
layer (digest.web.webhooks) checks the signature and hands over the body; nothing here
knows about HTTP.  The status changes are the store's (subscribers.store.suppress) and
the ledger's (digest.deliver.ledger.reconcile).

The body is signed by SendGrid, but its fields are still read defensively: a field of an
unexpected type or range makes that one event `ignored`, never an error for the batch.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from digest.deliver import ledger
from digest.store import MAX_ID, is_busy, utcnow, webhook_events
from digest.subscribers import store
from digest.text import not_text

log = logging.getLogger("uvicorn.error")

DROPPED = {
    "Bounced Address": "bounced",
    "Spam Reporting Address": "complained",
    "Unsubscribed Address": "unsubscribed",
}
# Classifications that describe our sending (content, volume, reputation, a glitch),
# not a dead address: like `type: blocked`, they are soft and change nothing.
SOFT_CLASSIFICATIONS = {"Content", "Frequency or Volume Too High", "Reputation", "Technical", "Technical Failure"}


class MalformedEvents(ValueError):
    """The body is not a JSON array of event objects."""


def parse_events(body: bytes) -> list[dict]:
    try:
        events = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedEvents("the body is not JSON") from None
    except RecursionError:  # arrays nested thousands deep: no event looks like that
        raise MalformedEvents("the body is nested too deeply to be SendGrid's events") from None
    if not isinstance(events, list):
        raise MalformedEvents("the body must be a JSON array of event objects")
    # An element that is not an object is unusable, like an event with odd fields:
    # skip it rather than refuse the batch (SendGrid would redeliver it for ever).
    return [e for e in events if isinstance(e, dict)]


# -- what an event means (pure) -----------------------------------------------------------

def text(event: dict, name: str) -> str:
    """A string field, or "" when it is missing, of another type (a list, a dict, a number),
    or holds characters that are not text (digest.text): no real event has a NUL or an
    escape in a field, and PostgreSQL cannot store a NUL, so such a field is unusable."""
    value = event.get(name)
    return value if isinstance(value, str) and not not_text(value) else ""


def suppression(event: dict) -> tuple[str, str] | None:
    """(new status, reason) for a suppressing event, or None."""
    kind = text(event, "event")
    reason = " ".join((text(event, "reason") or text(event, "status")).split())[:300]
    if kind == "bounce":
        if text(event, "type") == "blocked" or text(event, "bounce_classification") in SOFT_CLASSIFICATIONS:
            return None
        return "bounced", f"bounce: {reason}" if reason else "bounce"
    if kind == "spamreport":
        return "complained", "spam report"
    if kind == "unsubscribe":
        return "unsubscribed", "unsubscribed through SendGrid"
    if kind == "group_unsubscribe":
        group = event.get("asm_group_id")
        shown = group if isinstance(group, int) and not isinstance(group, bool) else text(event, "asm_group_id")[:20]
        return "unsubscribed", f"group unsubscribe (ASM group {shown or '?'})"
    if kind == "dropped" and text(event, "reason") in DROPPED:
        return DROPPED[event["reason"]], f"dropped: {event['reason']}"
    return None


def custom_arg(event: dict, name: str) -> str | None:
    """A custom arg as text (SendGrid flattens them into the event; the nested form works too).

    Only strings and integers are accepted: anything else is as good as missing.
    """
    value = event.get(name)
    if value is None and isinstance(event.get("custom_args"), dict):
        value = event["custom_args"].get(name)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value)


def subscriber_id(event: dict) -> int | None:
    """Our subscriber_id custom arg, when it is plain digits in 0 < id < MAX_ID (else the
    database would overflow on it)."""
    value = custom_arg(event, "subscriber_id")
    if not (value and value.isascii() and value.isdigit() and len(value) <= 19):
        return None
    number = int(value)
    return number if 0 < number < MAX_ID else None


def edition_of(event: dict) -> str | None:
    value = custom_arg(event, "edition")
    return value if value and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else None


def email_of(event: dict) -> str:
    email = text(event, "email").strip()
    return email if len(email) <= 320 else ""


def message_id(event: dict) -> str | None:
    # sg_message_id is X-Message-Id plus a ".filter…" suffix; the ledger keeps X-Message-Id.
    sg = text(event, "sg_message_id")
    return sg.split(".", 1)[0][:200] if sg else None


def event_id(event: dict) -> str | None:
    """sg_event_id; "" when absent (applied without dedupe); None when unusable (a list, or
    too long to store whole, or with characters that are not text: cutting or cleaning it
    could merge two events into one)."""
    value = event.get("sg_event_id")
    if value is None or value == "":
        return ""
    return value if isinstance(value, str) and len(value) <= 200 and not not_text(value) else None


# -- applying events ------------------------------------------------------------------------

@dataclass
class Tally:
    received: int = 0
    suppressed: int = 0   # subscribers whose status changed
    reconciled: int = 0   # unknown ledger rows turned sent
    duplicates: int = 0
    ignored: int = 0      # unknown type, soft bounce, nobody to apply it to, already suppressed, malformed
    failed: int = 0       # could not be applied now (e.g. the database failed): left for redelivery

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def apply_events(engine: Engine, events: list[dict]) -> Tally:
    """Apply each event not seen before; every event on its own, so one bad event never
    keeps the others of its batch from being applied.

    An event is recorded as seen (its sg_event_id inserted: a unique key, so two
    concurrent deliveries cannot both apply it) and applied in one transaction: if
    applying fails, or the process dies halfway, neither happened, and SendGrid's
    redelivery applies it (the caller answers 5xx to ask for one).
    """
    tally = Tally(received=len(events))
    for event in events:
        eid = event_id(event)
        if eid is None:
            tally.ignored += 1
            continue
        try:
            with engine.begin() as conn:
                if eid:
                    _mark_seen(conn, eid, event)
                outcome = _apply(conn, event)
        except _Duplicate:
            outcome = "duplicates"
        except Exception as e:  # whatever it was, the rest of the batch still gets applied
            if is_busy(e):  # so would the rest fail: stop, the web layer answers 503 and SendGrid redelivers
                raise
            log.exception("a webhook event could not be applied (sg_event_id %r); it is left for redelivery", eid)
            tally.failed += 1
            continue
        setattr(tally, outcome, getattr(tally, outcome) + 1)
    return tally


def _apply(conn: Connection, event: dict) -> str:
    """Apply one event inside the caller's transaction; return the Tally field it counts toward.

    Any event about a message of ours (it carries our edition and subscriber custom args:
    processed, delivered, but also bounce, dropped, deferred, open, ...) shows SendGrid
    accepted its request, so that person's `unknown` row becomes `sent`; a suppressing
    event then also changes the subscriber's status.
    """
    edition, sid = edition_of(event), subscriber_id(event)
    reconciled = bool(edition and sid is not None
                      and ledger.reconcile(conn, edition, sid, email_of(event), message_id(event)))
    change = suppression(event)
    if change is not None:
        subscriber = _subscriber_of(conn, event)
        if subscriber and store.suppress(conn, subscriber, *change):
            return "suppressed"
    return "reconciled" if reconciled else "ignored"


def _subscriber_of(conn: Connection, event: dict) -> store.Subscriber | None:
    """By our subscriber_id custom arg when it matches the address, else by the address."""
    email = email_of(event)
    sid = subscriber_id(event)
    found = store.get(conn, id=sid) if sid is not None else None
    if found and (not email or found.email.lower() == email.lower()):
        return found
    return store.get(conn, email=email) if email else None


class _Duplicate(Exception):
    """This event was applied before; raised to roll its transaction back."""


def _mark_seen(conn: Connection, eid: str, event: dict) -> None:
    """Record the event as seen, in the transaction that applies it; _Duplicate if it was seen before."""
    try:
        conn.execute(webhook_events.insert().values(
            sg_event_id=eid, event=text(event, "event")[:40], email=email_of(event) or None,
            received_at=utcnow()))
    except IntegrityError:
        raise _Duplicate(eid) from None
