"""The ledger: one row per (edition, subscriber), the truth about who got what.

    pending -> unknown (claimed: the request is about to leave) -> sent | failed | unknown

A row is claimed (status `unknown`, reason IN_FLIGHT, the sender's name and lease) *before*
its request leaves, so a sender killed mid-request leaves `unknown` rows that are
reported once its lease runs out, never silently resent.

Only this module writes the ledger table, and every write is set-based: the audience is
frozen with one INSERT ... SELECT, a chunk is claimed with one UPDATE ... RETURNING, a
batch's outcomes are recorded with one UPDATE per distinct outcome — never a statement
or a commit per recipient.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import EllipsisType
from typing import Callable

from sqlalchemy import (
    DateTime,
    Integer,
    String,
    and_,
    bindparam,
    case,
    column,
    delete,
    func,
    literal,
    or_,
    select,
    update,
    values,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.expression import ColumnClause, ColumnElement, FromClause

from digest.config import Settings
from digest.schedule import local_weekday, resolve, slot
from digest.select import DEFAULTED
from digest.store import editions, ledger, subscribers, transaction, utcnow

# `cancelled`: a scheduled row whose send `digest cancel` stopped at SendGrid before it was due.
STATUSES = ("pending", "sent", "failed", "unknown", "cancelled")
# SendGrid schedules a send at most 72 hours ahead; rows due later wait for a later run.
HORIZON = timedelta(hours=72)
# ... and pauses or cancels a scheduled send only until 10 minutes before it is due.
CANCEL_NOTICE = timedelta(minutes=10)
# Also what a concurrent run sees for rows another run is sending right now, hence the wording.
IN_FLIGHT = ("a run took this recipient and recorded no outcome (still sending, or stopped mid-request); "
             "it may have been sent")
CHUNK = 1000  # SendGrid's limit of personalizations per request


@dataclass(frozen=True)
class Row:
    """A claimed ledger row: who gets the chunk's digest."""
    id: int
    subscriber_id: int
    email: str
    name: str


@dataclass(frozen=True)
class Chunk:
    """Pending rows of one digest (one section mask) due at one time, claimed by one run."""
    section_mask: int
    rows: list[Row]
    send_at: datetime | None = None


# -- the audience and when each reader is due -------------------------------------------------

class Schedule:
    """An edition's audience and when each of them is due, as SQL over `subscribers`.

    Daily: the daily readers.  `weekly`: the weekly readers whose weekday it is in their
    own zone when their digest of `day` is due.

    The audience is active, daily, and not paused on the local date their digest is due
    (paused_until later than that date).  When someone is due depends only on their zone
    and hour (digest.schedule), and an audience has few distinct (zone, hour) pairs — a
    few hundred at most — so each pair's time is computed once in Python and joined in as
    a VALUES list (`source`, for select_from): never a statement, or a computation, per
    subscriber.  When everyone shares one pair, the time is a literal and nothing is joined.
    """

    def __init__(self, conn: Connection, day: date, settings: Settings, weekly: bool = False):
        self.day, self.settings, self.weekly = day, settings, weekly
        cadence = "weekly" if weekly else "daily"
        stored = (select(subscribers.c.timezone, subscribers.c.delivery_hour).distinct()
                  .where(subscribers.c.status == "active", subscribers.c.cadence == cadence))
        pairs = {(zone, hour): slot(day, settings, *resolve(zone, hour, settings))
                 for zone, hour in conn.execute(stored)}
        # Whoever signs up between the pairs' query and the statement using them: the default.
        self.default = slot(day, settings, *resolve(None, None, settings))
        self.slots = sorted(set(pairs.values()), key=lambda s: (s.due, s.zone, s.hour))
        self.source: FromClause = subscribers
        self.due: ColumnElement
        local: ColumnElement
        weekday: ColumnElement  # the reader's weekday when due (weekly: it must be their day)
        if len(self.slots) <= 1:  # everyone due at once: no join
            only = self.slots[0] if self.slots else self.default
            self.due, local = literal(only.due, DateTime), literal(only.local_date, String)
            weekday = literal(local_weekday(only), Integer)
        else:
            # NULL zone/hour are keyed '' and -1: an equality join cannot match NULLs.
            columns: list[ColumnClause] = [column("zone", String), column("hour", Integer),
                                           column("due", DateTime), column("local_date", String)]
            if weekly:
                columns.append(column("weekday", Integer))
            table = values(*columns, name="slots").data(
                [(zone or "", -1 if hour is None else hour, s.due, s.local_date)
                 + ((local_weekday(s),) if weekly else ())
                 for (zone, hour), s in pairs.items()]).cte("slots")
            self.source = subscribers.outerjoin(table, and_(
                func.coalesce(subscribers.c.timezone, "") == table.c.zone,
                func.coalesce(subscribers.c.delivery_hour, -1) == table.c.hour))
            self.due = func.coalesce(table.c.due, literal(self.default.due, DateTime))
            local = func.coalesce(table.c.local_date, literal(self.default.local_date, String))
            if weekly:
                weekday = func.coalesce(table.c.weekday, literal(local_weekday(self.default), Integer))
        self.audience = and_(subscribers.c.status == "active", subscribers.c.cadence == cadence,
                             or_(subscribers.c.paused_until.is_(None), subscribers.c.paused_until <= local))
        if weekly:
            # On their weekday (their own, else the newsletter's), in their own zone, when due:
            # the run of each day takes the weekly readers whose day it is, so each reader is
            # in exactly one weekly edition a week.
            chosen = func.coalesce(subscribers.c.weekday, literal(settings.weekly_weekday, Integer))
            self.audience = and_(self.audience, chosen == weekday)


# -- freezing -------------------------------------------------------------------------------

def freeze_audience(conn: Connection, day: str, offered_mask: int, default_mask: int,
                    story_mask: int | None, schedule: Schedule | None = None) -> int:
    """Write every subscriber of the audience whose digest has a story as a pending row,
    due when `schedule` says (its `due`); return how many.

    One INSERT ... SELECT: the sections are resolved in SQL exactly as
    digest.select.subscriber_sections does (chosen ∩ offered, else the defaults), and a
    subscriber is left out when their resolved sections hold none of the day's stories
    (`story_mask`; None when a lead story opens every digest, so nobody's is empty; with
    send_lead_only off, the sections with a story besides the lead).  Without a
    schedule: every active subscriber, due now (send_at NULL).
    """
    chosen = subscribers.c.section_mask.op("&")(offered_mask)
    # Nothing chosen: the defaults; chosen, but none offered: the defaults, flagged DEFAULTED
    # (the digest says why), as digest.select.resolved_mask does.
    resolved = case((subscribers.c.section_mask == 0, literal(default_mask)),
                    (chosen == 0, literal(default_mask | DEFAULTED)), else_=chosen)
    now = utcnow()
    due = schedule.due if schedule is not None else literal(None, DateTime)
    audience = select(literal(day), subscribers.c.id, subscribers.c.email, subscribers.c.name, resolved,
                      literal("pending"), literal(0), due, literal(now))
    if schedule is not None:
        audience = audience.select_from(schedule.source).where(schedule.audience)
    else:
        audience = audience.where(subscribers.c.status == "active")
    if story_mask is not None:
        audience = audience.where(resolved.op("&")(story_mask) != 0)
    # Rows in claim order, so each claim range (one digest, one due time) is a run of
    # neighbouring ids: a claim and its outcome then touch a few table pages, not one page
    # a row.  (Unordered, the schedule's join gave subscriber order, and the send of
    # 100,000 spent a third longer writing pages.)
    audience = audience.order_by(resolved, *([due] if schedule is not None else []), subscribers.c.id)
    columns = ["edition", "subscriber_id", "email", "name", "section_mask", "status", "attempts", "send_at",
               "updated_at"]
    conn.execute(ledger.insert().from_select(columns, audience))
    # Counted, not taken from rowcount: not every driver reports one for INSERT ... SELECT.
    return conn.execute(select(func.count()).select_from(ledger).where(ledger.c.edition == day)).scalar_one()


# -- the send loop's statements ---------------------------------------------------------------

def pending_masks(engine: Engine, day: str) -> list[int]:
    """The distinct digests (section masks) that still have pending rows, in claim order."""
    q = (select(ledger.c.section_mask).where(ledger.c.edition == day, ledger.c.status == "pending")
         .distinct().order_by(ledger.c.section_mask))
    with engine.connect() as conn:
        return list(conn.execute(q).scalars())


def horizon() -> datetime:
    """The latest send_at SendGrid takes now: rows due later wait for a later run."""
    return utcnow() + HORIZON


def _sendable(until: datetime):
    return or_(ledger.c.send_at.is_(None), ledger.c.send_at <= until)


def pending_slots(engine: Engine, day: str, until: datetime | None = None) -> list[tuple[int, datetime | None]]:
    """The (section mask, send_at) pairs with pending rows due by `until` (default: the
    horizon), the soonest due first: one claim range each, one send_at per request."""
    q = (select(ledger.c.section_mask, ledger.c.send_at)
         .where(ledger.c.edition == day, ledger.c.status == "pending", _sendable(until or horizon())).distinct())
    with engine.connect() as conn:
        found = conn.execute(q).all()
    return sorted(((m, at) for m, at in found), key=lambda p: (p[1] or datetime.min, p[0]))


def held(engine: Engine, day: str, until: datetime | None = None) -> tuple[int, datetime | None]:
    """Pending rows due after `until` (default: the horizon): how many, and the first one's send_at."""
    q = (select(func.count(), func.min(ledger.c.send_at))
         .where(ledger.c.edition == day, ledger.c.status == "pending", ledger.c.send_at > (until or horizon())))
    with engine.connect() as conn:
        n, first = conn.execute(q).one()
    return n, first


class Claimer:
    """One sender's statements for claiming and recording, built once (a send runs thousands).

    Claiming a chunk is one UPDATE ... RETURNING over the first `size` pending rows of one
    digest whose subscriber is still active (someone who left during the run is not
    mailed; `withdraw_departed` drops their rows at the start and the end of every run).
    On PostgreSQL the rows are picked `FOR UPDATE SKIP LOCKED`, so senders claiming at
    the same moment take different rows without waiting for each other; SQLite has one
    writer at a time, so there the claims simply take turns.  Each claimed row carries
    the sender's name and lease (digest.deliver.lease).
    """

    def __init__(self, engine: Engine, day: str, sender: str, lease_until: Callable[[], datetime],
                 size: int = CHUNK):
        self.engine, self.day, self.sender, self.lease_until = engine, day, sender, lease_until
        self.size = size
        still_active = (select(subscribers.c.id).where(subscribers.c.id == ledger.c.subscriber_id,
                                                       subscribers.c.status == "active").exists())

        def claim(*due) -> object:
            # One range of ix_ledger_claim: (edition, pending, mask, send_at), in id order.
            window = (select(ledger.c.id).where(ledger.c.edition == day, ledger.c.status == "pending",
                                                ledger.c.section_mask == bindparam("mask"), *due, still_active)
                      .order_by(ledger.c.id).limit(size).with_for_update(skip_locked=True))
            return (update(ledger).where(ledger.c.id.in_(window.scalar_subquery()))
                    .values(status="unknown", reason=IN_FLIGHT, claim=sender, lease_until=bindparam("until"),
                            attempts=ledger.c.attempts + 1, updated_at=bindparam("now"))
                    .returning(ledger.c.id, ledger.c.subscriber_id, ledger.c.email, ledger.c.name))
        self._claim = claim()  # any send_at (tools and tests)
        self._claim_now = claim(ledger.c.send_at.is_(None))
        self._claim_at = claim(ledger.c.send_at == bindparam("due", type_=DateTime))
        self._record = (update(ledger).where(ledger.c.id.in_(bindparam("ids", expanding=True)))
                        .values(status=bindparam("status"), message_id=bindparam("message_id"),
                                reason=bindparam("reason"), lease_until=None, updated_at=bindparam("now")))

    # One connection for the whole run: checking one out of the pool per statement (and
    # the rollback the pool issues on each return) cost more than the statements.
    def __enter__(self) -> Claimer:
        self._conn = self.engine.connect()
        return self

    def __exit__(self, *exc) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    _conn: Connection | None = None

    @contextmanager
    def _transaction(self):
        if self._conn is None:
            with self.engine.begin() as conn:
                yield conn
        else:
            with self._conn.begin():
                yield self._conn

    def claim(self, section_mask: int, send_at: datetime | None | EllipsisType = ...) -> Chunk:
        """The next chunk of one digest's pending rows due at `send_at` (None: rows due
        now; left out: any), now this sender's; empty when none is left."""
        values = {"mask": section_mask, "until": self.lease_until(), "now": utcnow()}
        statement = self._claim if send_at is ... else self._claim_now if send_at is None else self._claim_at
        if isinstance(send_at, datetime):
            values["due"] = send_at
        with self._transaction() as conn:
            claimed = conn.execute(statement, values).all()
        rows = sorted((Row(i, sid, email, name or "") for i, sid, email, name in claimed), key=lambda r: r.id)
        return Chunk(section_mask, rows, send_at if isinstance(send_at, datetime) else None)

    def record_groups(self, groups: dict) -> None:
        """{(status, message id, reason): [ledger ids]} (digest.deliver.workers.Settled groups
        them) in one transaction: a batch SendGrid accepted is one UPDATE ... WHERE id IN
        (...), however many recipients it had."""
        groups = {key: ids for key, ids in groups.items() if ids and ids[0] is not None}
        if not groups:
            return
        now = utcnow()
        with self._transaction() as conn:
            for (status, message_id, reason), ids in groups.items():
                conn.execute(self._record, {"ids": ids, "status": status, "message_id": message_id,
                                            "reason": reason, "now": now})


def claim_chunk(engine: Engine, day: str, section_mask: int, sender: str, size: int = CHUNK,
                lease_for: timedelta = timedelta(minutes=2)) -> Chunk:
    """One chunk claimed with a Claimer of its own (tests, tools); the send loop keeps one."""
    return Claimer(engine, day, sender, lambda: utcnow() + lease_for, size).claim(section_mask)


# -- leases ------------------------------------------------------------------------------

def _leased(sender: str | None = None):
    """Rows in flight: claimed, no outcome yet, lease still running."""
    # lease_until IS NOT NULL first: NOT(... AND NULL > now) would be NULL, not true.
    live = and_(ledger.c.lease_until.is_not(None), ledger.c.lease_until > utcnow(),
                ledger.c.status == "unknown", ledger.c.reason == IN_FLIGHT)
    return live if sender is None else and_(live, ledger.c.claim == sender)


def renew_lease(engine: Engine, day: str, sender: str, until: datetime) -> None:
    """Push the lease of `sender`'s rows in flight out to `until` (one UPDATE)."""
    with engine.begin() as conn:
        conn.execute(update(ledger).where(ledger.c.edition == day, ledger.c.claim == sender,
                                          ledger.c.status == "unknown", ledger.c.reason == IN_FLIGHT,
                                          ledger.c.lease_until.is_not(None))
                     .values(lease_until=until))


def end_lease(engine: Engine, day: str, sender: str) -> int:
    """A sender is known to be dead: its rows in flight are unknown now, not in an hour."""
    with engine.begin() as conn:
        return conn.execute(update(ledger).where(ledger.c.edition == day, _leased(sender))
                            .values(lease_until=None, updated_at=utcnow())).rowcount


def in_flight(engine: Engine, day: str) -> list[tuple[str, int, datetime]]:
    """(sender, rows, lease until) of every sender holding a live lease on this edition."""
    q = (select(ledger.c.claim, func.count(), func.max(ledger.c.lease_until))
         .where(ledger.c.edition == day, _leased()).group_by(ledger.c.claim).order_by(ledger.c.claim))
    with engine.connect() as conn:
        return [(s, n, until) for s, n, until in conn.execute(q)]


def withdraw_departed(engine: Engine, day: str) -> int:
    """Drop pending rows of people no longer active (they left after the freeze); how many."""
    still_active = (select(subscribers.c.id).where(subscribers.c.id == ledger.c.subscriber_id,
                                                   subscribers.c.status == "active").exists())
    with engine.begin() as conn:
        n = conn.execute(delete(ledger).where(ledger.c.edition == day, ledger.c.status == "pending",
                                              ~still_active)).rowcount
        if n:  # counted on the edition, since their rows are gone (`digest status` reports it)
            conn.execute(update(editions).where(editions.c.date == day)
                         .values(withdrawn=editions.c.withdrawn + n))
        return n


def release(engine: Engine, ids, sender: str) -> None:
    """Give claimed rows back (pending) when their request certainly never left."""
    ids = list(ids)
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(update(ledger).where(and_(ledger.c.id.in_(ids), ledger.c.claim == sender,
                                               ledger.c.status == "unknown", ledger.c.reason == IN_FLIGHT))
                     .values(status="pending", reason=None, claim=None, lease_until=None, updated_at=utcnow()))


def requeue(engine: Engine, day: str, status: str) -> int:
    """`send --retry failed|unknown`: put those rows back to pending, explicitly.

    Rows under a live lease are in flight at another sender: they are never taken.
    """
    with engine.begin() as conn:
        q = update(ledger).where(ledger.c.edition == day, ledger.c.status == status)
        if status == "unknown":
            q = q.where(~_leased())
        return conn.execute(q.values(status="pending", reason=None, claim=None, lease_until=None,
                                     updated_at=utcnow())).rowcount


# -- the edition's SendGrid batch, and cancelling what is scheduled ------------------------------

def batch_of(conn_or_engine, day: str) -> str | None:
    """The SendGrid batch id of the edition of `day`, if it has one."""
    with transaction(conn_or_engine) as conn:
        return conn.execute(select(editions.c.batch_id).where(editions.c.date == day)).scalar()


def edition_batch(engine: Engine, day: str, new_batch: Callable[[], str]) -> str | None:
    """The edition's batch id, made with `new_batch` (POST /v3/mail/batch) the first time.

    Stored once, by a conditional UPDATE: when two senders make one at the same moment,
    the first stored wins and both use it (the other id simply stays unused at SendGrid).
    """
    found = batch_of(engine, day)
    if found:
        return found
    made = new_batch()
    with engine.begin() as conn:
        conn.execute(update(editions).where(editions.c.date == day, editions.c.batch_id.is_(None))
                     .values(batch_id=made))
    return batch_of(engine, day)


def _scheduled(day: str, after: datetime):
    return and_(ledger.c.edition == day, ledger.c.status == "sent", ledger.c.send_at.is_not(None),
                ledger.c.send_at > after)


def scheduled(engine: Engine, day: str) -> int:
    """Rows SendGrid took with a send_at still ahead: sent, but not in the inbox yet."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(ledger).where(_scheduled(day, utcnow()))).scalar_one()


def next_due(engine: Engine, day: str) -> datetime | None:
    """The earliest send_at still ahead among the rows not yet in an inbox (sent or pending)."""
    q = select(func.min(ledger.c.send_at)).where(ledger.c.edition == day, ledger.c.status.in_(("sent", "pending")),
                                                 ledger.c.send_at > utcnow())
    with engine.connect() as conn:
        return conn.execute(q).scalar()


def cancellable(engine: Engine, day: str) -> tuple[int, int]:
    """(rows SendGrid can still stop: sent and due more than 10 minutes from now; pending
    rows due that late, which no run may send after a cancel)."""
    after = utcnow() + CANCEL_NOTICE
    pending_late = and_(ledger.c.edition == day, ledger.c.status == "pending", ledger.c.send_at > after)
    with engine.connect() as conn:
        sent = conn.execute(select(func.count()).select_from(ledger).where(_scheduled(day, after))).scalar_one()
        waiting = conn.execute(select(func.count()).select_from(ledger).where(pending_late)).scalar_one()
    return sent, waiting


def cancel(engine: Engine, day: str, after: datetime | None = None) -> int:
    """`digest cancel`: rows due more than 10 minutes from now (sent, so scheduled at
    SendGrid, or still pending) become `cancelled`, in one UPDATE; how many.  Rows due
    sooner are SendGrid's to deliver: they stay as they are."""
    after = after or utcnow() + CANCEL_NOTICE
    reason = "digest cancel: the scheduled send was cancelled before it was due"
    with engine.begin() as conn:
        return conn.execute(update(ledger).where(ledger.c.edition == day, ledger.c.status.in_(("sent", "pending")),
                                                 ledger.c.send_at > after)
                            .values(status="cancelled", reason=reason, updated_at=utcnow())).rowcount


# -- reading -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """A ledger row as `digest status` and the tests read it."""
    id: int
    subscriber_id: int
    email: str
    name: str
    section_mask: int
    status: str
    reason: str | None
    message_id: str | None
    send_at: datetime | None = None  # when the row is due in the inbox (UTC); None: at once


def rows(engine: Engine, day: str, status: str | None = None) -> list[Entry]:
    q = (select(ledger.c.id, ledger.c.subscriber_id, ledger.c.email, ledger.c.name, ledger.c.section_mask,
                ledger.c.status, ledger.c.reason, ledger.c.message_id, ledger.c.send_at)
         .where(ledger.c.edition == day).order_by(ledger.c.id))
    if status:
        q = q.where(ledger.c.status == status)
    with engine.connect() as conn:
        return [Entry(*r) for r in conn.execute(q)]


def pending(engine: Engine, day: str) -> int:
    """How many rows are still to send: a range of the claim index, not a count of the
    whole edition (the progress of `send --workers` asks twice a second)."""
    q = select(func.count()).select_from(ledger).where(ledger.c.edition == day, ledger.c.status == "pending")
    with engine.connect() as conn:
        return conn.execute(q).scalar_one()


def counts(engine: Engine, day: str) -> dict[str, int]:
    q = select(ledger.c.status, func.count()).where(ledger.c.edition == day).group_by(ledger.c.status)
    with engine.connect() as conn:
        found: dict[str, int] = {status: n for status, n in conn.execute(q).all()}
    # `cancelled` only once there are some: the shape scripts read stays the same until then.
    return {s: found.get(s, 0) for s in STATUSES if s != "cancelled" or found.get(s)}


def all_sent(counts: dict[str, int]) -> bool:
    """Whether every row of an edition is `sent` (or `cancelled` on purpose; an edition
    without rows counts as done):
    the one rule for `digest send` exiting 0, and for `digest status` too."""
    return counts.get("sent", 0) + counts.get("cancelled", 0) == sum(counts.values())


def problems(engine: Engine, day: str, limit: int | None = None) -> list[dict]:
    """Failed or unknown rows, with their reason: what `status` and `send` report.  Rows in
    flight at a live sender are not problems (yet): `in_flight` counts them."""
    q = (select(ledger.c.email, ledger.c.status, ledger.c.reason)
         .where(ledger.c.edition == day, ledger.c.status.in_(("failed", "unknown")), ~_leased())
         .order_by(ledger.c.id))
    if limit is not None:
        q = q.limit(limit)
    with engine.connect() as conn:
        return [{"email": e, "status": s, "reason": r or ""} for e, s, r in conn.execute(q)]


def report(engine: Engine, day: str) -> dict:
    """`digest status`: {"date", "counts", "problems"}, the shape the README fixes (under
    "Real send", **Status**), plus keys present only when they are not empty:
    "withdrawn" (who left after the freeze and was not sent: their rows are gone),
    "scheduled" (sent rows whose send_at is still ahead: at SendGrid, not in an inbox
    yet), "next_due" (the earliest send_at ahead, UTC), "held" (pending rows due beyond
    SendGrid's 72 hours) and, while senders are at work, "in_flight" (each one's rows,
    counted as unknown, and lease)."""
    with engine.connect() as conn:
        withdrawn = conn.execute(select(editions.c.withdrawn).where(editions.c.date == day)).scalar() or 0
    found: dict[str, object] = {"date": day, "counts": counts(engine, day), "problems": problems(engine, day)}
    if withdrawn:
        found["withdrawn"] = withdrawn
    ahead, due, (later, _) = scheduled(engine, day), next_due(engine, day), held(engine, day)
    if ahead:
        found["scheduled"] = ahead
    if due is not None:
        found["next_due"] = f"{due:%Y-%m-%d %H:%M:%S}"
    if later:
        found["held"] = later
    senders = in_flight(engine, day)
    if senders:
        found["in_flight"] = [{"sender": s, "rows": n, "lease_until": f"{until:%Y-%m-%d %H:%M:%S}"}
                              for s, n, until in senders]
    return found


def row_email(conn_or_engine, day: str, subscriber_id: int) -> str | None:
    """The address an edition was sent to (the webhook checks events against it)."""
    with transaction(conn_or_engine) as conn:
        return conn.execute(select(ledger.c.email).where(
            ledger.c.edition == day, ledger.c.subscriber_id == subscriber_id)).scalar()


# -- changes from outside the send loop ----------------------------------------------------

def erase_subscriber(conn: Connection, subscriber_id: int) -> None:
    """Right to erasure: the rows hold the address, so they go with the subscriber."""
    conn.execute(delete(ledger).where(ledger.c.subscriber_id == subscriber_id))


def reconcile(conn_or_engine, day: str, subscriber_id: int, email: str, message_id: str | None) -> bool:
    """SendGrid processed or delivered the message of (`day`, subscriber): their `unknown`
    row becomes `sent`; whether it did.

    Only an event about the message we sent that person may do it: when the event names
    an address (`email`, "" when it names none), it must be the row's or the subscriber's.
    A mismatching address means a mixed-up or stale custom arg, and the row stays `unknown`.
    """
    with transaction(conn_or_engine) as conn:
        if email and email.lower() not in _addresses(conn, day, subscriber_id):
            return False
        return mark_sent_by_event(conn, day, subscriber_id, message_id)


def _addresses(conn: Connection, day: str, subscriber_id: int) -> set[str]:
    """The address the edition's row was sent to and the subscriber's address now, lower-cased."""
    sent_to = row_email(conn, day, subscriber_id)
    now = conn.execute(select(subscribers.c.email).where(subscribers.c.id == subscriber_id)).scalar()
    return {e.lower() for e in (sent_to, now) if e}


def mark_sent_by_event(conn_or_engine, day: str, subscriber_id: int, message_id: str | None) -> bool:
    """Webhook reconciliation: an `unknown` row SendGrid says it processed becomes `sent`."""
    with transaction(conn_or_engine) as conn:
        n = conn.execute(update(ledger).where(ledger.c.edition == day, ledger.c.subscriber_id == subscriber_id,
                                              ledger.c.status == "unknown")
                         .values(status="sent", message_id=message_id, reason=None, lease_until=None,
                                 updated_at=utcnow())).rowcount
    return n > 0
