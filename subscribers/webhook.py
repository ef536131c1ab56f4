"""SendGrid's Event Webhook: check the signature, then turn events into suppressions.

    bounce (hard)                      -> bounced
    spamreport                         -> complained
    unsubscribe, group_unsubscribe     -> unsubscribed
    dropped, by reason                 -> bounced | complained | unsubscribed
    processed, delivered (edition)     -> the ledger's `unknown` row becomes `sent`

Every event is applied at most once (`webhook_events`, keyed by `sg_event_id`).  The web
layer only hands over the raw body and headers; nothing here knows about HTTP.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from digest.config import ConfigError
from digest.deliver import ledger
from digest.store import utcnow, webhook_events
from subscribers import store

MAX_SKEW = 600  # seconds: older (or future) signatures are refused, so a captured request cannot be replayed later

# Suppression strength: a later, weaker event never overwrites a stronger one.
RANK = {"unsubscribed": 1, "bounced": 2, "complained": 3}

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


class Verifier:
    """Checks `X-Twilio-Email-Event-Webhook-Signature` over the raw body and timestamp."""

    def __init__(self, public_key: str, max_skew: int = MAX_SKEW, clock=time.time):
        self.enabled = bool(public_key)
        self.max_skew = max_skew
        self.clock = clock
        self._helper = EventWebhook()
        self._key = load_public_key(public_key) if public_key else None

    def verify(self, body: bytes, signature: str | None, timestamp: str | None) -> bool:
        if not (self._key and signature and timestamp):
            return False
        try:
            if abs(self.clock() - int(timestamp)) > self.max_skew:
                return False  # the helper never checks the timestamp itself
            # The helper wants str and raises (rather than returning False) on bad base64.
            return self._helper.verify_signature(body.decode("utf-8"), signature, timestamp, self._key)
        except (ValueError, TypeError):  # includes binascii.Error and UnicodeDecodeError
            return False


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The key as SendGrid shows it (base64 DER, no PEM lines); a bad one is a startup error."""
    body = "".join(line for line in text.strip().splitlines() if not line.startswith("-----"))
    try:
        key = EventWebhook().convert_public_key_to_ecdsa(body)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA public key "
                          "(paste the 'Verification Key' from SendGrid's signed Event Webhook settings)")
    return key


def parse_events(body: bytes) -> list[dict]:
    try:
        events = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedEvents("the body is not JSON") from None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise MalformedEvents("the body must be a JSON array of event objects")
    return events


# -- what an event means (pure) -----------------------------------------------------------

def suppression(event: dict) -> tuple[str, str] | None:
    """(new status, reason) for a suppressing event, or None."""
    kind = event.get("event")
    reason = " ".join(str(event.get("reason") or event.get("status") or "").split())[:300]
    if kind == "bounce":
        if event.get("type") == "blocked" or event.get("bounce_classification") in SOFT_CLASSIFICATIONS:
            return None
        return "bounced", f"bounce: {reason}" if reason else "bounce"
    if kind == "spamreport":
        return "complained", "spam report"
    if kind == "unsubscribe":
        return "unsubscribed", "unsubscribed through SendGrid"
    if kind == "group_unsubscribe":
        return "unsubscribed", f"group unsubscribe (ASM group {event.get('asm_group_id', '?')})"
    if kind == "dropped" and event.get("reason") in DROPPED:
        return DROPPED[event["reason"]], f"dropped: {event['reason']}"
    return None


def custom_arg(event: dict, name: str) -> str | None:
    """SendGrid flattens custom_args into the event; accept the nested form too."""
    value = event.get(name)
    if value is None and isinstance(event.get("custom_args"), dict):
        value = event["custom_args"].get(name)
    return None if value is None else str(value)


def message_id(event: dict) -> str | None:
    # sg_message_id is X-Message-Id plus a ".filter…" suffix; the ledger keeps X-Message-Id.
    sg = event.get("sg_message_id")
    return str(sg).split(".", 1)[0] if sg else None


# -- applying events ------------------------------------------------------------------------

@dataclass
class Tally:
    received: int = 0
    suppressed: int = 0   # subscribers whose status changed
    reconciled: int = 0   # unknown ledger rows turned sent
    duplicates: int = 0
    ignored: int = 0      # unknown type, soft bounce, nobody to apply it to, already suppressed

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def apply_events(engine: Engine, events: list[dict]) -> Tally:
    """Apply each event not seen before.

    An event is remembered *after* it is applied: a crash in between means a harmless
    re-apply on SendGrid's redelivery, never an event recorded but lost.
    """
    tally = Tally(received=len(events))
    for event in events:
        event_id = str(event.get("sg_event_id") or "")[:200]
        if event_id and _seen(engine, event_id):
            tally.duplicates += 1
            continue
        outcome = _apply(engine, event)
        setattr(tally, outcome, getattr(tally, outcome) + 1)
        if event_id:
            _remember(engine, event_id, event)
    return tally


def _apply(engine: Engine, event: dict) -> str:
    """Apply one event; return the Tally field it counts toward."""
    kind = event.get("event")
    if kind in ("processed", "delivered"):
        edition, sid = custom_arg(event, "edition"), _int(custom_arg(event, "subscriber_id"))
        if edition and sid is not None and ledger.mark_sent_by_event(engine, edition, sid, message_id(event)):
            return "reconciled"
        return "ignored"
    change = suppression(event)
    subscriber = _subscriber_of(engine, event) if change else None
    if not subscriber or RANK.get(subscriber.status, 0) >= RANK[change[0]]:
        return "ignored"
    store.set_status(engine, subscriber.id, change[0], change[1])
    return "suppressed"


def _subscriber_of(engine: Engine, event: dict) -> store.Subscriber | None:
    """By our subscriber_id custom arg when it matches the address, else by the address."""
    email = str(event.get("email") or "").strip()
    sid = _int(custom_arg(event, "subscriber_id"))
    found = store.get(engine, id=sid) if sid is not None else None
    if found and (not email or found.email.lower() == email.lower()):
        return found
    return store.get(engine, email=email) if email else None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _seen(engine: Engine, event_id: str) -> bool:
    with engine.connect() as conn:
        q = select(webhook_events.c.sg_event_id).where(webhook_events.c.sg_event_id == event_id)
        return conn.execute(q).first() is not None


def _remember(engine: Engine, event_id: str, event: dict) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(webhook_events.insert().values(
                sg_event_id=event_id, event=str(event.get("event") or "")[:40],
                email=str(event.get("email") or "")[:320] or None, received_at=utcnow()))
    except IntegrityError:
        pass  # a concurrent delivery of the same event got there first
