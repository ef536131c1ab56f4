"""The ledger: one row per (edition, subscriber), the truth about who got what.

    pending -> unknown (claimed: the request is about to leave) -> sent | failed | unknown

A row is claimed (status `unknown`, reason IN_FLIGHT) *before* its request leaves, so a
run killed mid-request leaves `unknown` rows that are reported, never silently resent.

Only this module writes the ledger table, and every write is set-based: the audience is
frozen with one INSERT ... SELECT, a chunk is claimed with one UPDATE ... RETURNING, a
batch's outcomes are recorded with one UPDATE per distinct outcome — never a statement
or a commit per recipient.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import and_, case, delete, exists, func, literal, select, update
from sqlalchemy.engine import Connection, Engine

from digest.store import ledger, subscribers, utcnow

STATUSES = ("pending", "sent", "failed", "unknown")
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
    """Pending rows of one digest (one section mask), claimed by one run."""
    section_mask: int
    rows: list[Row]
    withdrawn: int  # rows of this window dropped because their subscriber left meanwhile


# -- freezing -------------------------------------------------------------------------------

def freeze_audience(conn: Connection, day: str, offered_mask: int, default_mask: int,
                    story_mask: int | None) -> int:
    """Write every active subscriber whose digest has a story as a pending row; return how many.

    One INSERT ... SELECT: the sections are resolved in SQL exactly as
    digest.select.subscriber_sections does (chosen ∩ offered, else the defaults), and a
    subscriber is left out when their resolved sections hold none of the day's stories
    (`story_mask`; None when a lead story opens every digest, so nobody's is empty).
    """
    chosen = subscribers.c.section_mask.op("&")(offered_mask)
    resolved = case((chosen == 0, literal(default_mask)), else_=chosen)
    now = utcnow()
    audience = select(literal(day), subscribers.c.id, subscribers.c.email, subscribers.c.name, resolved,
                      literal("pending"), literal(0), literal(now)).where(subscribers.c.status == "active")
    if story_mask is not None:
        audience = audience.where(resolved.op("&")(story_mask) != 0)
    columns = ["edition", "subscriber_id", "email", "name", "section_mask", "status", "attempts", "updated_at"]
    return conn.execute(ledger.insert().from_select(columns, audience)).rowcount


# -- the send loop's statements ---------------------------------------------------------------

def new_claim() -> str:
    return uuid.uuid4().hex


def pending_masks(engine: Engine, day: str) -> list[int]:
    """The distinct digests (section masks) that still have pending rows, in claim order."""
    q = (select(ledger.c.section_mask).where(ledger.c.edition == day, ledger.c.status == "pending")
         .distinct().order_by(ledger.c.section_mask))
    with engine.connect() as conn:
        return list(conn.execute(q).scalars())


def claim_chunk(engine: Engine, day: str, section_mask: int, claim_id: str, after_id: int = 0,
                size: int = CHUNK) -> Chunk:
    """Claim the next pending rows of one digest (ids above `after_id`, keyset order).

    One transaction, two statements: rows whose subscriber is no longer active are
    withdrawn (so someone who left during the run is not mailed), then the rest of the
    window is claimed and returned.  The DELETE comes first so SQLite takes the write lock
    at the start of the transaction, never upgrading a read (which would fail when busy).
    """
    def window():
        return (select(ledger.c.id).where(ledger.c.edition == day, ledger.c.status == "pending",
                                          ledger.c.section_mask == section_mask, ledger.c.id > after_id)
                .order_by(ledger.c.id).limit(size))

    still_active = exists().where(subscribers.c.id == ledger.c.subscriber_id, subscribers.c.status == "active")
    with engine.begin() as conn:
        withdrawn = conn.execute(delete(ledger).where(ledger.c.id.in_(window()), ~still_active)).rowcount
        claimed = conn.execute(
            update(ledger).where(ledger.c.id.in_(window()))
            .values(status="unknown", reason=IN_FLIGHT, claim=claim_id, attempts=ledger.c.attempts + 1,
                    updated_at=utcnow())
            .returning(ledger.c.id, ledger.c.subscriber_id, ledger.c.email, ledger.c.name)).all()
    rows = sorted((Row(i, sid, email, name or "") for i, sid, email, name in claimed), key=lambda r: r.id)
    return Chunk(section_mask, rows, withdrawn)


def record(engine: Engine, outcomes) -> None:
    """Write a batch's outcomes (each with .recipient.ledger_id) in one transaction.

    Outcomes are grouped by (status, message id, reason): a batch SendGrid accepted is one
    UPDATE ... WHERE id IN (...), however many recipients it had.
    """
    groups: dict[tuple, list[int]] = defaultdict(list)
    for o in outcomes:
        groups[(o.status, o.message_id, (o.reason or "")[:2000] or None)].append(o.recipient.ledger_id)
    if not groups:
        return
    now = utcnow()
    with engine.begin() as conn:
        for (status, message_id, reason), ids in groups.items():
            conn.execute(update(ledger).where(ledger.c.id.in_(ids))
                         .values(status=status, message_id=message_id, reason=reason, updated_at=now))


def release(engine: Engine, ids, claim_id: str) -> None:
    """Give claimed rows back (pending) when their request certainly never left."""
    ids = list(ids)
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(update(ledger).where(and_(ledger.c.id.in_(ids), ledger.c.claim == claim_id,
                                               ledger.c.reason == IN_FLIGHT))
                     .values(status="pending", reason=None, claim=None, updated_at=utcnow()))


def requeue(engine: Engine, day: str, status: str) -> int:
    """`send --retry failed|unknown`: put those rows back to pending, explicitly."""
    with engine.begin() as conn:
        return conn.execute(update(ledger).where(ledger.c.edition == day, ledger.c.status == status)
                            .values(status="pending", reason=None, claim=None, updated_at=utcnow())).rowcount


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


def rows(engine: Engine, day: str, status: str | None = None) -> list[Entry]:
    q = (select(ledger.c.id, ledger.c.subscriber_id, ledger.c.email, ledger.c.name, ledger.c.section_mask,
                ledger.c.status, ledger.c.reason, ledger.c.message_id)
         .where(ledger.c.edition == day).order_by(ledger.c.id))
    if status:
        q = q.where(ledger.c.status == status)
    with engine.connect() as conn:
        return [Entry(*r) for r in conn.execute(q)]


def counts(engine: Engine, day: str) -> dict[str, int]:
    q = select(ledger.c.status, func.count()).where(ledger.c.edition == day).group_by(ledger.c.status)
    with engine.connect() as conn:
        found = dict(conn.execute(q).all())
    return {s: found.get(s, 0) for s in STATUSES}


def problems(engine: Engine, day: str, limit: int | None = None) -> list[dict]:
    """Failed or unknown rows, with their reason: what `status` and `send` report."""
    q = (select(ledger.c.email, ledger.c.status, ledger.c.reason)
         .where(ledger.c.edition == day, ledger.c.status.in_(("failed", "unknown"))).order_by(ledger.c.id))
    if limit is not None:
        q = q.limit(limit)
    with engine.connect() as conn:
        return [{"email": e, "status": s, "reason": r or ""} for e, s, r in conn.execute(q)]


def report(engine: Engine, day: str) -> dict:
    """`digest status`: {"date", "counts", "problems"}, the shape DESIGN.md fixes."""
    return {"date": day, "counts": counts(engine, day), "problems": problems(engine, day)}


def row_email(engine: Engine, day: str, subscriber_id: int) -> str | None:
    """The address an edition was sent to (the webhook checks events against it)."""
    with engine.connect() as conn:
        return conn.execute(select(ledger.c.email).where(
            ledger.c.edition == day, ledger.c.subscriber_id == subscriber_id)).scalar()


# -- changes from outside the send loop ----------------------------------------------------

def erase_subscriber(conn: Connection, subscriber_id: int) -> None:
    """Right to erasure: the rows hold the address, so they go with the subscriber."""
    conn.execute(delete(ledger).where(ledger.c.subscriber_id == subscriber_id))


def mark_sent_by_event(engine: Engine, day: str, subscriber_id: int, message_id: str | None) -> bool:
    """Webhook reconciliation: an `unknown` row SendGrid says it processed becomes `sent`."""
    with engine.begin() as conn:
        n = conn.execute(update(ledger).where(ledger.c.edition == day, ledger.c.subscriber_id == subscriber_id,
                                              ledger.c.status == "unknown")
                         .values(status="sent", message_id=message_id, reason=None, updated_at=utcnow())).rowcount
    return n > 0
