"""The ledger: one row per (edition, subscriber), the truth about who got what.

    pending -> unknown (claimed: the request is about to leave) -> sent | failed | unknown

A row is claimed (status `unknown`, reason IN_FLIGHT) *before* its request leaves, so a
run killed mid-request leaves `unknown` rows that are reported, never silently resent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.engine import Engine

from digest.store import ledger, transaction, utcnow

STATUSES = ("pending", "sent", "failed", "unknown")
# Also what a concurrent run sees for rows another run is sending right now, hence the wording.
IN_FLIGHT = ("a run took this recipient and recorded no outcome (still sending, or stopped mid-request); "
             "it may have been sent")


@dataclass(frozen=True)
class Row:
    id: int
    subscriber_id: int
    email: str
    name: str
    sections: tuple[str, ...]
    status: str
    reason: str | None
    message_id: str | None


def _row(r) -> Row:
    return Row(r.id, r.subscriber_id, r.email, r.name or "", tuple(r.sections), r.status, r.reason, r.message_id)


def rows(engine: Engine, day: str, status: str | None = None) -> list[Row]:
    q = select(ledger).where(ledger.c.edition == day).order_by(ledger.c.id)
    if status:
        q = q.where(ledger.c.status == status)
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(q)]


def counts(engine: Engine, day: str) -> dict[str, int]:
    q = select(ledger.c.status, func.count()).where(ledger.c.edition == day).group_by(ledger.c.status)
    with engine.connect() as conn:
        found = dict(conn.execute(q).all())
    return {s: found.get(s, 0) for s in STATUSES}


def problems(engine: Engine, day: str) -> list[dict]:
    """Every failed or unknown row, with its reason: what `status` and `send` report."""
    q = (select(ledger.c.email, ledger.c.status, ledger.c.reason)
         .where(ledger.c.edition == day, ledger.c.status.in_(("failed", "unknown"))).order_by(ledger.c.id))
    with engine.connect() as conn:
        return [{"email": e, "status": s, "reason": r or ""} for e, s, r in conn.execute(q)]


def report(engine: Engine, day: str) -> dict:
    """`digest status`: {"date", "counts", "problems"}, the shape DESIGN.md fixes."""
    return {"date": day, "counts": counts(engine, day), "problems": problems(engine, day)}


def new_claim() -> str:
    return uuid.uuid4().hex


def claim(engine: Engine, ids: list[int], claim_id: str) -> set[int]:
    """Take pending rows for this run; rows another run took meanwhile are not returned."""
    with engine.begin() as conn:
        conn.execute(update(ledger).where(and_(ledger.c.id.in_(ids), ledger.c.status == "pending"))
                     .values(status="unknown", reason=IN_FLIGHT, claim=claim_id,
                             attempts=ledger.c.attempts + 1, updated_at=utcnow()))
        got = conn.execute(select(ledger.c.id).where(ledger.c.id.in_(ids), ledger.c.claim == claim_id,
                                                     ledger.c.status == "unknown", ledger.c.reason == IN_FLIGHT))
        return set(got.scalars())


def record(engine: Engine, outcomes) -> None:
    """Write each Outcome to its row in one transaction."""
    now = utcnow()
    with engine.begin() as conn:
        for o in outcomes:
            conn.execute(update(ledger).where(ledger.c.id == o.recipient.ledger_id).values(
                status=o.status, message_id=o.message_id, reason=(o.reason or "")[:2000] or None, updated_at=now))


def release(engine: Engine, ids, claim_id: str) -> None:
    """Give claimed rows back (pending) when their request certainly never left."""
    with engine.begin() as conn:
        conn.execute(update(ledger).where(and_(ledger.c.id.in_(list(ids)), ledger.c.claim == claim_id,
                                               ledger.c.reason == IN_FLIGHT))
                     .values(status="pending", reason=None, claim=None, updated_at=utcnow()))


def requeue(engine: Engine, day: str, status: str) -> int:
    """`send --retry failed|unknown`: put those rows back to pending, explicitly."""
    with engine.begin() as conn:
        return conn.execute(update(ledger).where(ledger.c.edition == day, ledger.c.status == status)
                            .values(status="pending", reason=None, claim=None, updated_at=utcnow())).rowcount


def withdraw(engine: Engine, ids) -> None:
    """Drop pending rows of people who left after the edition froze: they get nothing."""
    with engine.begin() as conn:
        conn.execute(delete(ledger).where(ledger.c.id.in_(list(ids)), ledger.c.status == "pending"))


def mark_sent_by_event(conn_or_engine, day: str, subscriber_id: int, message_id: str | None) -> bool:
    """Webhook reconciliation: an `unknown` row SendGrid says it processed becomes `sent`."""
    with transaction(conn_or_engine) as conn:
        n = conn.execute(update(ledger).where(ledger.c.edition == day, ledger.c.subscriber_id == subscriber_id,
                                              ledger.c.status == "unknown")
                         .values(status="sent", message_id=message_id, reason=None, updated_at=utcnow())).rowcount
    return n > 0
