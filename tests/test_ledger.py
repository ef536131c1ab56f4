"""The ledger and the send loop in-process, with a scripted transport in place of SendGrid.

The send loop depends only on a store and a transport, so these tests drive
`digest.sending.send` directly to check what the ledger holds after each kind of outcome,
including a run that dies half-way.
"""

from __future__ import annotations

from datetime import date

import pytest

from digest.articles.importer import import_articles
from digest.deliver import ledger
from digest.deliver.transport import Batch, FatalTransportError, Outcome
from digest.edition import freeze, load_edition
from digest import sending
from subscribers import store as subscriber_store
from subscribers.tokens import Signer
from tests.conftest import SAMPLE, SAMPLE_DAY, SECRET

DAY = date.fromisoformat(SAMPLE_DAY)


class Scripted:
    """A transport answering each batch with the next status of `script` (default: sent)."""

    name = "scripted"

    def __init__(self, *script):
        self.script = list(script)
        self.batches: list[Batch] = []

    def deliver(self, batch: Batch) -> list[Outcome]:
        self.batches.append(batch)
        what = self.script.pop(0) if self.script else "sent"
        if isinstance(what, BaseException):
            raise what
        return [Outcome(r, what, message_id="m1" if what == "sent" else None,
                        reason=None if what == "sent" else f"scripted {what}") for r in batch.recipients]

    def emails(self) -> list[str]:
        return [r.email for b in self.batches for r in b.recipients]


@pytest.fixture
def world(engine, settings):
    """Sample stories and three subscribers with different digests (three batches)."""
    assert not import_articles(engine, [SAMPLE / "articles"], settings).rejected
    for email, sections in (("a@example.com", ("world",)), ("b@example.com", ("tech",)), ("c@example.com", ("food",))):
        subscriber_store.add(engine, email, email[0].upper(), sections)
    return engine


def run(engine, settings, transport, **kw):
    return sending.send(engine, settings, DAY, transport, Signer(SECRET), **kw)


def statuses(engine) -> dict[str, str]:
    return {r.email: r.status for r in ledger.rows(engine, SAMPLE_DAY)}


def test_claim_is_exclusive_and_release_returns_only_own_in_flight_rows(world, settings):
    edition = load_edition(world, DAY, settings)
    people = subscriber_store.list_all(world)
    assert freeze(world, edition, [(p.id, p.email, p.name, p.sections) for p in people])
    ids = [r.id for r in ledger.rows(world, SAMPLE_DAY)]

    first, second = ledger.new_claim(), ledger.new_claim()
    assert ledger.claim(world, ids[:2], first) == set(ids[:2])
    assert ledger.claim(world, ids, second) == {ids[2]}  # the others are taken
    ledger.release(world, ids, first)
    assert [r.status for r in ledger.rows(world, SAMPLE_DAY)] == ["pending", "pending", "unknown"]
    assert ledger.counts(world, SAMPLE_DAY) == {"pending": 2, "sent": 0, "failed": 0, "unknown": 1}


def test_edition_freezes_once(world, settings):
    edition = load_edition(world, DAY, settings)
    assert not edition.frozen
    assert freeze(world, edition, [(1, "a@example.com", "A", ("world",))])
    assert not freeze(world, edition, [(2, "b@example.com", "B", ("tech",))])  # the first audience stands
    assert [r.email for r in ledger.rows(world, SAMPLE_DAY)] == ["a@example.com"]
    assert load_edition(world, DAY, settings).frozen


def test_outcomes_land_in_the_ledger_and_reruns_send_only_pending(world, settings):
    transport = Scripted("sent", "failed", "unknown")
    summary = run(world, settings, transport)
    assert summary.exit_code == 1
    assert statuses(world) == {"a@example.com": "sent", "b@example.com": "failed", "c@example.com": "unknown"}
    assert [p["email"] for p in summary.problems] == ["b@example.com", "c@example.com"]

    again = Scripted()
    assert run(world, settings, again).exit_code == 1 and again.batches == []
    assert run(world, settings, again, retry="failed").exit_code == 1
    assert again.emails() == ["b@example.com"]
    assert run(world, settings, again, retry="unknown").exit_code == 0
    assert again.emails() == ["b@example.com", "c@example.com"]


def test_a_crash_mid_run_leaves_the_in_flight_batch_unknown_and_the_rest_pending(world, settings):
    with pytest.raises(RuntimeError):
        run(world, settings, Scripted("sent", RuntimeError("power cut")))
    assert statuses(world) == {"a@example.com": "sent", "b@example.com": "unknown", "c@example.com": "pending"}
    [problem] = ledger.problems(world, SAMPLE_DAY)
    assert problem["email"] == "b@example.com" and problem["reason"] == ledger.IN_FLIGHT

    rest = Scripted()
    assert run(world, settings, rest).exit_code == 1  # b stays reported, c is sent
    assert rest.emails() == ["c@example.com"]


def test_fatal_error_returns_unsent_rows_to_pending_and_keeps_settled_ones(world, settings):
    refused = FatalTransportError("key refused")
    transport = Scripted("sent", refused)
    summary = run(world, settings, transport)
    assert summary.exit_code == 2 and summary.fatal == "key refused"
    assert statuses(world) == {"a@example.com": "sent", "b@example.com": "pending", "c@example.com": "pending"}

    # A refusal after part of a batch was accepted (a 413 half) records that part.
    subscriber_store.add(world, "d@example.com", "D", ("world",))  # not in the frozen audience
    partial = FatalTransportError("key refused")
    b_row = next(r for r in ledger.rows(world, SAMPLE_DAY) if r.email == "b@example.com")

    class HalfThenRefuse(Scripted):
        def deliver(self, batch):
            self.batches.append(batch)
            partial.done = [Outcome(r, "sent", message_id="m2") for r in batch.recipients if r.ledger_id == b_row.id]
            raise partial

    assert run(world, settings, HalfThenRefuse()).exit_code == 2
    assert statuses(world) == {"a@example.com": "sent", "b@example.com": "sent", "c@example.com": "pending"}


def test_people_who_leave_after_the_freeze_are_withdrawn_not_sent(world, settings):
    run(world, settings, Scripted(FatalTransportError("stop")))  # freezes, sends nothing
    subscriber_store.update(world, "b@example.com", status="unsubscribed", reason="test")
    transport = Scripted()
    summary = run(world, settings, transport)
    assert summary.withdrawn == 1 and summary.exit_code == 0
    assert transport.emails() == ["a@example.com", "c@example.com"]


def test_send_lock_one_sender_per_edition(engine, settings):
    from datetime import timedelta
    from sqlalchemy import update
    from digest.edition import STALE_AFTER, release_send_lock, take_send_lock, touch_send_lock
    from digest.store import editions, utcnow

    freeze(engine, load_edition(engine, DAY, settings), [])
    assert take_send_lock(engine, DAY, "other-host:123:abc") is None
    assert "other-host:123:abc" in take_send_lock(engine, DAY, "me:1:x")  # alive elsewhere: wait
    touch_send_lock(engine, DAY, "other-host:123:abc")
    with engine.begin() as conn:  # that host went silent long ago
        conn.execute(update(editions).values(sender_seen=utcnow() - STALE_AFTER - timedelta(seconds=1)))
    assert take_send_lock(engine, DAY, "me:1:x") is None
    release_send_lock(engine, DAY, "other-host:123:abc")  # not the holder any more: no effect
    assert take_send_lock(engine, DAY, "third:9:y") is not None
    release_send_lock(engine, DAY, "me:1:x")
    assert take_send_lock(engine, DAY, "third:9:y") is None
