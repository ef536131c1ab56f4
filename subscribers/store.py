"""Subscribers in the store.

An address is unique case-insensitively (`email_key`); the address keeps the case it was
given.  `sections == ()` means "the newsletter's default sections".  Statuses:
active, pending (double opt-in not yet confirmed), paused, unsubscribed, bounced, complained.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from digest import addresses, delivery_time
from digest.config import Settings, mask_sections, section_mask
from digest.deliver import ledger
from digest.delivery_time import DeliveryTimeError
from digest.store import subscribers, transaction, utcnow
from digest.text import strip_not_text

STATUSES = ("active", "pending", "paused", "unsubscribed", "bounced", "complained")
# Statuses set by mailbox providers' reports; only the subscriber's own action clears them.
SUPPRESSED = ("bounced", "complained")
# A delivery choice: the digest on, or paused.  These are what an operator may set
# (`digest subscribers update --status`) and what the preference page switches between;
# any other status is reached by unsubscribing, a sign-up, or SendGrid's events.
DELIVERY_CHOICES = ("active", "paused")


class SubscriberError(ValueError):
    """A subscriber operation cannot be done; the message says why."""


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    name: str
    sections: tuple[str, ...]
    status: str
    status_reason: str = ""
    # The delivery choice (digest.delivery_time); None: the newsletter's setting.
    timezone: str | None = None
    delivery_hour: int | None = None
    cadence: str = "daily"
    weekday: int | None = None          # 0 = Monday; used when weekly
    paused_until: date | None = None    # no digest before this day (in their zone); kept once passed

    def to_dict(self) -> dict:
        # id: what SendGrid's events carry back (custom_args.subscriber_id).
        d: dict[str, Any] = {"id": self.id, "email": self.email, "name": self.name,
                             "sections": list(self.sections), "status": self.status}
        if self.status_reason:
            d["reason"] = self.status_reason
        # Like the reason, a delivery choice appears only when the reader made one.
        if self.timezone:
            d["timezone"] = self.timezone
        if self.delivery_hour is not None:
            d["hour"] = self.delivery_hour
        if self.cadence != "daily":
            d["cadence"] = self.cadence
        if self.weekday is not None:
            d["weekday"] = delivery_time.weekday_name(self.weekday)
        if self.paused_until:
            d["paused_until"] = self.paused_until.isoformat()
        return d

    def zone(self, settings: Settings) -> str:
        return self.timezone or settings.timezone

    def hour(self, settings: Settings) -> int:
        return settings.delivery_hour if self.delivery_hour is None else self.delivery_hour

    def weekly_on(self, settings: Settings) -> int:
        return settings.weekly_weekday if self.weekday is None else self.weekday

    def paused_on(self, day: date) -> bool:
        """Whether a pause date keeps the digest of `day` (a day in their zone) away."""
        return self.paused_until is not None and day < self.paused_until

    def pause_ahead(self, settings: Settings) -> date | None:
        """The end of a pause still to come, or None (none set, or it has passed)."""
        if self.paused_until and self.paused_on(delivery_time.today_in(self.zone(settings))):
            return self.paused_until
        return None


def _remember_domain_checks() -> None:
    """Memoise email-validator's check of an address's domain part.

    Why: the check is two thirds of validate_email's ~50 µs and runs anew for every
    address, while a list of a million subscribers has a few thousand domains.  It is a
    pure function of its arguments whose result validate_email only reads, so it is
    cached where validate_email looks it up; a domain that fails is never cached (the
    exception is raised again each time).  If a release moves the function, validation
    simply runs uncached (tests/test_subscribers.py compares both).
    """
    module: Any = importlib.import_module("email_validator.validate_email")  # the module, not its function
    check = getattr(module, "validate_email_domain_name", None)
    if callable(check) and not hasattr(check, "cache_info"):
        module.validate_email_domain_name = functools.lru_cache(maxsize=8192)(check)


_remember_domain_checks()


def normalize_email(raw: str) -> str:
    """A syntactically valid address (domain lower-cased), or SubscriberError saying why not."""
    try:
        return addresses.normalize(raw)
    except addresses.AddressError as e:
        raise SubscriberError(str(e)) from None


def clean_name(name: str | None) -> str:
    """Whitespace folded; characters that are not text dropped: control characters (which
    could forge mail headers), lone surrogates (undecodable bytes: no database stores
    them) and noncharacters."""
    name = " ".join(strip_not_text(name or "").split())
    if len(name) > 200:
        raise SubscriberError("name is longer than 200 characters")
    return name


def _subscriber(row) -> Subscriber:
    return Subscriber(id=row.id, email=row.email, name=row.name or "", sections=mask_sections(row.section_mask),
                      status=row.status, status_reason=row.status_reason or "",
                      timezone=row.timezone, delivery_hour=row.delivery_hour, cadence=row.cadence or "daily",
                      weekday=row.weekday,
                      paused_until=date.fromisoformat(row.paused_until) if row.paused_until else None)


# -- the delivery choice: when the digest comes ---------------------------------------------------

# The fields of a delivery choice, as the CSV columns (and form fields) name them, with
# the store column each one fills.
DELIVERY_FIELDS = {"timezone": "timezone", "hour": "delivery_hour", "cadence": "cadence", "weekday": "weekday",
                   "paused_until": "paused_until"}


class DeliveryError(SubscriberError):
    """A delivery choice that cannot be stored: `field` (a key of DELIVERY_FIELDS) and why."""

    def __init__(self, field: str, value: object, why: str):
        super().__init__(f"{field}: {why}")
        self.field, self.value, self.why = field, value, why


def check_delivery(given: dict, zone: str) -> dict:
    """The store columns for a delivery choice, checked: the fields of `given` (keys of
    DELIVERY_FIELDS) become column values; DeliveryError names the first bad field.

    None or '' means "back to the newsletter's setting" (a NULL column; cadence: daily;
    paused_until: no pause).  `zone` is the reader's zone before this change (theirs, or
    the newsletter's); a pause must end after today there, or in the zone given now.
    """
    columns: dict[str, Any] = {}
    checks = {"timezone": delivery_time.check_zone, "hour": delivery_time.check_hour,
              "cadence": delivery_time.check_cadence, "weekday": delivery_time.check_weekday}
    for field in DELIVERY_FIELDS:
        if field not in given:
            continue
        value = given[field]
        if value is None or (isinstance(value, str) and not value.strip()):
            columns[DELIVERY_FIELDS[field]] = "daily" if field == "cadence" else None
            continue
        try:
            if field == "paused_until":
                zone = columns.get("timezone") or zone
                columns["paused_until"] = delivery_time.check_pause(value, zone).isoformat()
            else:
                columns[DELIVERY_FIELDS[field]] = checks[field](value)
        except DeliveryTimeError as e:
            raise DeliveryError(field, value, str(e)) from None
    return columns


def get(conn_or_engine, email: str | None = None, id: int | None = None) -> Subscriber | None:
    q = select(subscribers)
    if id is not None:
        q = q.where(subscribers.c.id == id)
    elif email is not None:
        try:  # the form it was stored in (an internationalised domain as punycode)
            email = normalize_email(email)
        except SubscriberError:
            pass
        q = q.where(subscribers.c.email_key == email.strip().lower())
    else:
        raise TypeError("get() needs an email or an id")
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            row = conn.execute(q).first()
    else:
        row = conn_or_engine.execute(q).first()
    return _subscriber(row) if row else None


def list_all(engine: Engine, status: str | None = None) -> list[Subscriber]:
    q = select(subscribers).order_by(subscribers.c.id)
    if status:
        q = q.where(subscribers.c.status == status)
    with engine.connect() as conn:
        return [_subscriber(r) for r in conn.execute(q)]


SEARCH_LIMIT = 20


def search(engine: Engine, text: str, limit: int = SEARCH_LIMIT) -> list[Subscriber]:
    """Subscribers whose address contains `text` (case-insensitively), prefix matches
    first, at most `limit`: the editors' desk finds someone to preview as."""
    needle = " ".join((text or "").split()).lower()
    if not needle:
        return []
    # LIKE's wildcards in what was typed are literal characters, not patterns.
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    key = subscribers.c.email_key
    q = (select(subscribers).where(key.like(f"%{escaped}%", escape="\\"))
         .order_by(case((key.like(f"{escaped}%", escape="\\"), 0), else_=1), key).limit(limit))
    with engine.connect() as conn:
        return [_subscriber(r) for r in conn.execute(q)]


def active_by_mask(engine: Engine) -> dict[int, int]:
    """How many active subscribers chose each section mask (0: the defaults): one GROUP BY."""
    q = (select(subscribers.c.section_mask, func.count()).where(subscribers.c.status == "active")
         .group_by(subscribers.c.section_mask))
    with engine.connect() as conn:
        return {mask: n for mask, n in conn.execute(q)}


def insert(conn: Connection, email: str, name: str, sections, status: str = "active",
           delivery: dict | None = None) -> int:
    """`delivery`: store columns from check_delivery."""
    now = utcnow()
    key = conn.execute(subscribers.insert().values(
        email=email, email_key=email.lower(), name=name, section_mask=section_mask(sections), status=status,
        created_at=now, updated_at=now, **(delivery or {}),
    )).inserted_primary_key
    assert key is not None  # an INSERT of one row always has it
    return key[0]


def _reread(conn: Connection, id: int) -> Subscriber:
    """The row just written, inside the transaction that wrote it (so it exists)."""
    found = get(conn, id=id)
    assert found is not None
    return found


def add(engine: Engine, email: str, name: str = "", sections=(), status: str = "active",
        delivery: dict | None = None, settings: Settings | None = None) -> Subscriber:
    """`delivery`: a delivery choice by field (see check_delivery), checked against
    `settings`' time zone."""
    email = normalize_email(email)
    columns = check_delivery(delivery or {}, (settings or Settings()).timezone)
    already = SubscriberError(f"{email} is already a subscriber (use 'subscribers update')")
    with engine.begin() as conn:
        if get(conn, email=email):
            raise already
        try:
            new_id = insert(conn, email, clean_name(name), sections, status, columns)
        except IntegrityError:
            # Another request added the address after our look (PostgreSQL lets both
            # transactions get this far; the unique key stops the second).  Raising ends,
            # and rolls back, the transaction the failed insert aborted.
            raise already from None
        return _reread(conn, new_id)


# The subscriber left, or their mailbox provider said to stop.  An operator may not lift
# these: only the subscriber's own action (the preference page) may, because sending
# again needs their consent or a working address.
LEFT = ("unsubscribed",) + SUPPRESSED


def check_operator_status(status: str | None) -> None:
    """SubscriberError unless an operator may set `status` (None: no change): a delivery choice only."""
    if status is not None and status not in DELIVERY_CHOICES:
        raise SubscriberError(f"can set {' or '.join(DELIVERY_CHOICES)} (use 'unsubscribe' to unsubscribe)")


def update(engine: Engine, email: str, *, name: str | None = None, sections=None,
           status: str | None = None, reason: str | None = None, by_operator: bool = False,
           status_only_from=None, delivery: dict | None = None, settings: Settings | None = None) -> Subscriber:
    """Change the given fields of an existing subscriber.

    `delivery`: the delivery choice's fields to change (see check_delivery); a pause date is
    checked against the subscriber's zone (else `settings`' time zone).

    `status_only_from`: the status changes only if the current one is among these, checked
    in the UPDATE itself (the other fields change regardless).  The preference page uses
    it: a delivery choice made on a page that showed the digest as on must not lift an
    unsubscribe, bounce or complaint that arrived after the page was shown.
    """
    if by_operator:
        check_operator_status(status)
    values: dict[str, Any] = {"updated_at": utcnow()}
    if name is not None:
        values["name"] = clean_name(name)
    if sections is not None:
        values["section_mask"] = section_mask(sections)
    if status is not None:
        if status not in STATUSES:
            raise SubscriberError(f"unknown status {status!r}")
        values["status"] = status
        values["status_reason"] = reason
        if status_only_from is not None:
            still = subscribers.c.status.in_(tuple(status_only_from))
            values["status"] = case((still, status), else_=subscribers.c.status)
            values["status_reason"] = case((still, reason), else_=subscribers.c.status_reason)
    with engine.begin() as conn:
        found = get(conn, email=email)
        if not found:
            raise SubscriberError(f"{email.strip()} is not a subscriber")
        if by_operator and status is not None and found.status in LEFT:
            raise SubscriberError(f"{found.email} is {found.status}; only they can resubscribe "
                                  "(from the preference page linked in every email)")
        if delivery:
            values.update(check_delivery(delivery, found.zone(settings or Settings())))
        conn.execute(subscribers.update().where(subscribers.c.id == found.id).values(**values))
        return _reread(conn, found.id)


def set_status(conn_or_engine, subscriber_id: int, status: str, reason: str | None = None) -> Subscriber | None:
    with transaction(conn_or_engine) as conn:
        conn.execute(subscribers.update().where(subscribers.c.id == subscriber_id)
                     .values(status=status, status_reason=reason, updated_at=utcnow()))
        return get(conn, id=subscriber_id)


def change_status_from(conn_or_engine, subscriber_id: int, only_from, status: str, reason: str | None) -> bool:
    """Set `status` only if the current status is one of `only_from`, in one conditional
    UPDATE; whether it changed.

    Why not read, check, then write: another process (a second `digest serve`, the webhook
    in another request) may change the row between the read and the write, and the write
    would undo that change, e.g. a one-click unsubscribe replacing a bounce that came in
    meanwhile.  A single UPDATE is checked against the row as it is when written: on
    PostgreSQL an UPDATE that waited for another transaction's row lock re-evaluates its
    WHERE against the committed row; SQLite has one writer at a time.
    """
    with transaction(conn_or_engine) as conn:
        return conn.execute(subscribers.update()
                            .where(subscribers.c.id == subscriber_id, subscribers.c.status.in_(tuple(only_from)))
                            .values(status=status, status_reason=reason, updated_at=utcnow())).rowcount == 1


# Suppression strength: a later, weaker suppression never replaces a stronger one.
SUPPRESSION_RANK = {"unsubscribed": 1, "bounced": 2, "complained": 3}


def suppress(conn_or_engine, subscriber: Subscriber, status: str, reason: str) -> bool:
    """Set a suppressing `status` (unsubscribed, bounced, complained) unless the subscriber
    already has one as strong; whether it changed.

    The rank is checked again in the UPDATE itself (change_status_from): a stronger event
    for the same person may be being applied at this moment by another process.
    """
    rank = SUPPRESSION_RANK[status]
    if SUPPRESSION_RANK.get(subscriber.status, 0) >= rank:
        return False
    weaker = [s for s in STATUSES if SUPPRESSION_RANK.get(s, 0) < rank]
    return change_status_from(conn_or_engine, subscriber.id, weaker, status, reason)


def unsubscribe(engine: Engine, subscriber: Subscriber, reason: str) -> Subscriber:
    """Idempotent; a bounce or spam report already stops everything, and says more, so it
    stays, even one that arrived after `subscriber` was read (change_status_from)."""
    if subscriber.status in LEFT:
        return subscriber
    with engine.begin() as conn:
        change_status_from(conn, subscriber.id, [s for s in STATUSES if s not in LEFT], "unsubscribed", reason)
        return get(conn, id=subscriber.id) or subscriber  # erased meanwhile: nothing left to unsubscribe


def unsubscribe_address(engine: Engine, email: str, reason: str) -> Subscriber:
    """unsubscribe() by address; SubscriberError if nobody has it."""
    found = get(engine, email=email)
    if not found:
        raise SubscriberError(f"{email.strip()} is not a subscriber")
    return unsubscribe(engine, found, reason)


def remove(engine: Engine, email: str) -> Subscriber:
    """Erase a subscriber, and their rows in every edition's ledger (they hold the address)."""
    with engine.begin() as conn:
        found = get(conn, email=email)
        if not found:
            raise SubscriberError(f"{email.strip()} is not a subscriber")
        ledger.erase_subscriber(conn, found.id)
        conn.execute(delete(subscribers).where(subscribers.c.id == found.id))
        return found


# -- sign-up helpers (double opt-in) --------------------------------------------------------------

def activate_pending(engine: Engine, subscriber_id: int, email: str) -> Subscriber | None:
    """pending -> active, in one conditional UPDATE; the subscriber, or None if they were not pending.

    Why only from pending: a confirmation link may finish a sign-up, never undo an
    unsubscribe, a bounce or a spam report; and once used it changes nothing (single use).
    Why the address too: the link names an id and an address; both must still match.
    """
    with engine.begin() as conn:
        done = conn.execute(subscribers.update()
                            .where(subscribers.c.id == subscriber_id, subscribers.c.email_key == email.lower(),
                                   subscribers.c.status == "pending")
                            .values(status="active", status_reason=None, updated_at=utcnow())).rowcount
        return get(conn, id=subscriber_id) if done else None


def claim_signup_email(engine: Engine, subscriber_id: int, interval: timedelta) -> bool:
    """True when a sign-up email may go to this subscriber now, i.e. the row was last touched
    more than `interval` ago; the row's updated_at becomes now, starting the next interval.

    Why updated_at: it rate-limits sign-up emails per address with no extra table (a
    sign-up request for the address counts as touching its row).  One conditional UPDATE,
    so a burst of concurrent requests lets exactly one email through.
    """
    now = utcnow()
    with engine.begin() as conn:
        return conn.execute(subscribers.update()
                            .where(subscribers.c.id == subscriber_id, subscribers.c.updated_at <= now - interval)
                            .values(updated_at=now)).rowcount == 1
