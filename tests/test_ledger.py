"""The ledger and the send loop in-process, with a scripted transport in place of SendGrid.

The send loop depends only on a store and a transport, so these tests drive
`digest.sending.send` directly to check what the ledger holds after each kind of outcome,
including a run that dies half-way.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from digest import sending
from digest.articles.importer import import_articles
from digest.config import section_mask
from digest.deliver import ledger
from digest.deliver.transport import Batch, FatalTransportError, Outcome
from digest.edition import freeze, load_edition
from digest.subscribers import store as subscriber_store
from digest.tokens import Signer
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


def run(engine, settings, transport, concurrency=1, **kw):
    """One request at a time unless asked: the scripts below answer batches in order."""
    settings = replace(settings, sendgrid_concurrency=concurrency)
    return sending.send(engine, settings, DAY, transport, Signer(SECRET), **kw)


def statuses(engine) -> dict[str, str]:
    return {r.email: r.status for r in ledger.rows(engine, SAMPLE_DAY)}


def test_claim_is_exclusive_keyset_ordered_and_release_returns_only_own_in_flight_rows(world, settings):
    for i in range(5):
        subscriber_store.add(world, f"w{i}@example.com", "", ("world",))
    frozen = freeze(world, load_edition(world, DAY, settings), settings)
    assert frozen.audience == 8 and frozen.edition.frozen
    world_mask = section_mask(["world"])
    assert ledger.pending_masks(world, SAMPLE_DAY) == sorted({section_mask([s]) for s in ("world", "tech", "food")})

    first, second = "host-a:1:aaaa", "host-b:2:bbbb"
    a = ledger.claim_chunk(world, SAMPLE_DAY, world_mask, first, size=4)
    assert [r.email for r in a.rows] == ["a@example.com", "w0@example.com", "w1@example.com", "w2@example.com"]
    b = ledger.claim_chunk(world, SAMPLE_DAY, world_mask, second, size=4)  # the first four are taken
    assert [r.email for r in b.rows] == ["w3@example.com", "w4@example.com"]
    assert ledger.claim_chunk(world, SAMPLE_DAY, world_mask, second).rows == []
    assert ledger.in_flight(world, SAMPLE_DAY)[0][:2] == (first, 4)
    ledger.release(world, [r.id for r in a.rows + b.rows], first)
    assert ledger.counts(world, SAMPLE_DAY) == {"pending": 6, "sent": 0, "failed": 0, "unknown": 2}


def test_edition_freezes_once_with_its_audience_written_in_sql(world, settings):
    edition = load_edition(world, DAY, settings)
    assert not edition.frozen
    assert freeze(world, edition, settings).audience == 3
    subscriber_store.add(world, "late@example.com", "", ("tech",))
    assert freeze(world, edition, settings).audience is None  # the first audience stands
    assert [r.email for r in ledger.rows(world, SAMPLE_DAY)] == ["a@example.com", "b@example.com", "c@example.com"]
    assert load_edition(world, DAY, settings).frozen


def test_freezing_resolves_sections_and_leaves_out_empty_digests_as_selection_does(engine, settings):
    """The SQL of freeze_audience against select_digest, for every kind of subscriber."""
    from benchmarks.busy_day import T0
    from digest.articles import Article
    from digest.select import Edition, resolved_mask, select_digest
    offered = replace(settings, sections=("world", "tech", "food", "gaming"), default_sections=("world", "tech"))
    edition = Edition(DAY, (Article(id="t", title="T", url="https://x.example/t", published=T0, sections=("tech",)),
                            Article(id="g", title="G", url="https://x.example/g", published=T0,
                                    sections=("gaming", "food"))))
    people = {"none@x.example": (), "sport@x.example": ("sports",), "world@x.example": ("world",),
              "food@x.example": ("food", "sports"), "all@x.example": ("world", "tech", "food", "gaming")}
    for email, chosen in people.items():
        subscriber_store.add(engine, email, "", chosen)
    subscriber_store.add(engine, "gone@x.example", "", ("tech",), status="unsubscribed")
    freeze(engine, edition, offered)
    got = {r.email: r.section_mask for r in ledger.rows(engine, SAMPLE_DAY)}
    expected = {}
    for email, chosen in people.items():
        mask = resolved_mask(section_mask(chosen), offered)
        if not select_digest(edition, chosen, offered).is_empty:
            expected[email] = mask
    assert got == expected and "world@x.example" not in got and "sport@x.example" in got  # defaults hold tech


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


def test_a_transport_bug_mid_run_leaves_its_batch_unknown_and_the_rest_pending(world, settings):
    summary = run(world, settings, Scripted("sent", RuntimeError("power cut")))
    assert summary.exit_code == 2 and "power cut" in summary.fatal
    assert statuses(world) == {"a@example.com": "sent", "b@example.com": "unknown", "c@example.com": "pending"}
    [problem] = ledger.problems(world, SAMPLE_DAY)
    assert problem["email"] == "b@example.com" and "may have left" in problem["reason"]

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


def test_a_live_lease_keeps_rows_in_flight_out_of_retries_and_problems(world, settings):
    from datetime import timedelta

    from digest.store import utcnow
    freeze(world, load_edition(world, DAY, settings), settings)
    world_mask = section_mask(["world"])
    live = ledger.claim_chunk(world, SAMPLE_DAY, world_mask, "elsewhere:7:live")  # a@, at work
    tech = section_mask(["tech"])
    dead = ledger.claim_chunk(world, SAMPLE_DAY, tech, "elsewhere:8:dead", lease_for=timedelta(seconds=-1))
    assert [r.email for r in live.rows] == ["a@example.com"] and [r.email for r in dead.rows] == ["b@example.com"]

    report = ledger.report(world, SAMPLE_DAY)
    assert report["counts"]["unknown"] == 2
    assert [p["email"] for p in report["problems"]] == ["b@example.com"]  # the live one is not a problem yet
    assert [(f["sender"], f["rows"]) for f in report["in_flight"]] == [("elsewhere:7:live", 1)]

    assert ledger.requeue(world, SAMPLE_DAY, "unknown") == 1  # only the expired lease's row
    assert statuses(world) == {"a@example.com": "unknown", "b@example.com": "pending", "c@example.com": "pending"}

    ledger.renew_lease(world, SAMPLE_DAY, "elsewhere:7:live", utcnow() + timedelta(hours=1))
    assert ledger.in_flight(world, SAMPLE_DAY)[0][2] > utcnow() + timedelta(minutes=59)
    assert ledger.end_lease(world, SAMPLE_DAY, "elsewhere:7:live") == 1  # its sender is known dead
    assert ledger.in_flight(world, SAMPLE_DAY) == []
    assert ledger.requeue(world, SAMPLE_DAY, "unknown") == 1


def test_a_dead_sender_of_this_host_has_its_lease_ended_at_once(world, settings):
    import os
    import socket
    import subprocess

    from digest.deliver.lease import end_dead_leases, process_gone
    gone = subprocess.Popen(["true"])
    gone.wait()
    here = socket.gethostname()
    freeze(world, load_edition(world, DAY, settings), settings)
    ledger.claim_chunk(world, SAMPLE_DAY, section_mask(["world"]), f"{here}:{gone.pid}:x")
    ledger.claim_chunk(world, SAMPLE_DAY, section_mask(["tech"]), f"{here}:{os.getpid()}:me")
    ledger.claim_chunk(world, SAMPLE_DAY, section_mask(["food"]), "another-host:1:y")
    assert process_gone(f"{here}:{gone.pid}:x") and not process_gone("another-host:1:y")
    assert end_dead_leases(world, SAMPLE_DAY) == 1
    assert [s for s, _, _ in ledger.in_flight(world, SAMPLE_DAY)] == ["another-host:1:y", f"{here}:{os.getpid()}:me"]


def test_a_sender_that_cannot_renew_its_lease_stops_before_sending(world, settings, monkeypatch):
    """Its rows may already count as unknown (and be retried) elsewhere: it must not send them."""
    from datetime import timedelta

    from digest.deliver.lease import Lease
    from digest.deliver.workers import LEASE_LOST
    from digest.sending import Summary, run_sender
    from digest.store import utcnow
    freeze(world, load_edition(world, DAY, settings), settings)
    lease = Lease(world, SAMPLE_DAY, "here:1:stale")
    def short_lease(self):
        self.until = utcnow() + timedelta(seconds=5)
        return self
    monkeypatch.setattr(Lease, "__enter__", short_lease)
    transport = Scripted()
    summary = Summary(date=SAMPLE_DAY, mode="send")
    run_sender(world, settings, load_edition(world, DAY, settings), transport, Signer(SECRET), summary, lease=lease)
    assert summary.fatal == LEASE_LOST and summary.fatal_code == 1
    assert transport.batches == []
    assert ledger.counts(world, SAMPLE_DAY)["pending"] == 3  # given back: certainly never sent


class Gate(Scripted):
    """Holds every request until `release`, counting how many are in flight at once."""

    def __init__(self, *script):
        super().__init__(*script)
        import threading
        self.lock, self.in_flight, self.most = threading.Lock(), 0, 0
        self.release = threading.Event()

    def deliver(self, batch):
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            if self.in_flight == 3:
                self.release.set()
        self.release.wait(5)
        try:
            return super().deliver(batch)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_requests_overlap_up_to_the_concurrency_and_each_is_recorded(world, settings):
    transport = Gate()
    summary = run(world, settings, transport, concurrency=4)
    assert transport.most == 3  # all three digests' batches were in flight together
    assert summary.exit_code == 0 and summary.requests == 3
    assert set(statuses(world).values()) == {"sent"}


def test_a_refused_key_stops_new_batches_while_those_in_flight_are_recorded(world, settings):
    transport = Gate("sent", FatalTransportError("key refused"), "sent")
    summary = run(world, settings, transport, concurrency=4)
    assert summary.exit_code == 2 and summary.fatal == "key refused"
    by_status = sorted(statuses(world).values())
    assert by_status == ["pending", "sent", "sent"]  # the refused batch went back to pending
    assert ledger.counts(world, SAMPLE_DAY)["unknown"] == 0


def test_a_whole_chunk_of_people_who_left_does_not_stop_their_digests_sending(world, settings):
    """A claim passes over leavers (a window of only leavers once ended the digest)."""
    for i in range(6):
        subscriber_store.add(world, f"w{i}@example.com", "", ("world",))
    freeze(world, load_edition(world, DAY, settings), settings)
    for email in ("a@example.com", "w0@example.com", "w1@example.com"):  # the first window of 3
        subscriber_store.update(world, email, status="unsubscribed", reason="test")
    from datetime import timedelta

    from digest.store import utcnow
    claimer = ledger.Claimer(world, SAMPLE_DAY, "here:1:x", lambda: utcnow() + timedelta(minutes=2), size=3)
    world_mask = section_mask(["world"])
    assert [r.email for r in claimer.claim(world_mask).rows] == ["w2@example.com", "w3@example.com",
                                                                  "w4@example.com"]


def test_send_goes_past_a_window_of_people_who_left_during_the_run(world, settings, monkeypatch):
    for i in range(6):
        subscriber_store.add(world, f"f{i}@example.com", "", ("food",))
    monkeypatch.setattr(ledger.Claimer.__init__, "__defaults__", (3,))  # chunks of 3

    class LeaveWhileSending(Scripted):
        def deliver(self, batch):
            if not self.batches:  # while the first request (world) is out, food's first three leave
                for email in ("c@example.com", "f0@example.com", "f1@example.com"):
                    subscriber_store.update(world, email, status="unsubscribed", reason="test")
            return super().deliver(batch)
    transport = LeaveWhileSending()
    summary = run(world, settings, transport)
    assert summary.exit_code == 0 and summary.withdrawn == 3
    assert sorted(transport.emails()) == sorted(["a@example.com", "b@example.com"] +
                                                [f"f{i}@example.com" for i in range(2, 6)])


@pytest.mark.postgres_only
def test_rows_a_dying_claim_held_locked_are_sent_once_it_lets_go(world, settings):
    """Another sender is in the middle of claiming b@ (its transaction holds the row lock)
    when this one passes: SKIP LOCKED skips it.  That sender dies and PostgreSQL rolls its
    claim back: this sender must come back for the row, not end with it pending."""
    import threading

    from sqlalchemy import select

    from digest.store import ledger as ledger_table
    freeze(world, load_edition(world, DAY, settings), settings)
    holder = world.connect()
    tx = holder.begin()
    holder.execute(select(ledger_table.c.id).where(ledger_table.c.email == "b@example.com").with_for_update())
    threading.Timer(1.0, tx.rollback).start()  # the dying sender's connection drops
    transport = Scripted()
    summary = run(world, settings, transport)
    holder.close()
    assert summary.exit_code == 0 and sorted(transport.emails()) == ["a@example.com", "b@example.com",
                                                                      "c@example.com"]
    assert set(statuses(world).values()) == {"sent"}


# -- when each row is due -------------------------------------------------------------------

def test_freeze_writes_each_rows_due_time_per_zone_and_hour_and_leaves_out_weekly_and_paused(world, settings):
    from sqlalchemy import update

    from digest.schedule import delivery_time
    from digest.store import subscribers
    settings = replace(settings, timezone="Europe/London", delivery_hour=7)
    zones = {"a@example.com": ("Asia/Kolkata", 6), "b@example.com": ("Pacific/Kiritimati", None),
             "c@example.com": (None, 23)}
    with world.begin() as conn:
        for email, (zone, hour) in zones.items():
            conn.execute(update(subscribers).where(subscribers.c.email == email)
                         .values(timezone=zone, delivery_hour=hour))
    for email, cadence, paused in (("weekly@example.com", "weekly", None),
                                   ("paused@example.com", "daily", "2026-11-26"),
                                   ("back@example.com", "daily", "2026-11-25")):
        subscriber_store.add(world, email, "", ("world",))
        with world.begin() as conn:
            conn.execute(update(subscribers).where(subscribers.c.email == email)
                         .values(cadence=cadence, paused_until=paused))
    # A stored zone that is no zone: the reader still gets the digest, at the newsletter's.
    subscriber_store.add(world, "odd@example.com", "", ("world",))
    with world.begin() as conn:
        conn.execute(update(subscribers).where(subscribers.c.email == "odd@example.com").values(timezone="Mars/Base"))
    frozen = freeze(world, load_edition(world, DAY, settings), settings)
    assert frozen.audience == 5
    due = {r.email: r.send_at for r in ledger.rows(world, SAMPLE_DAY)}
    expected = {"a@example.com": delivery_time(DAY, settings, "Asia/Kolkata", 6),
                "b@example.com": delivery_time(DAY, settings, "Pacific/Kiritimati", 7),
                "c@example.com": delivery_time(DAY, settings, "Europe/London", 23),
                "back@example.com": delivery_time(DAY, settings, "Europe/London", 7),
                "odd@example.com": delivery_time(DAY, settings, "Europe/London", 7)}
    assert due == {e: at.replace(tzinfo=None) for e, at in expected.items()}


def test_rows_due_beyond_the_horizon_are_not_claimed_until_a_later_run(world, settings):
    from datetime import timedelta

    from sqlalchemy import update

    from digest.store import ledger as ledger_table
    from digest.store import utcnow
    freeze(world, load_edition(world, DAY, settings), settings)
    now = utcnow().replace(microsecond=0)
    edge = now + ledger.HORIZON
    with world.begin() as conn:  # one row exactly at the 72-hour edge, one a minute past it
        conn.execute(update(ledger_table).where(ledger_table.c.email == "a@example.com").values(send_at=edge))
        conn.execute(update(ledger_table).where(ledger_table.c.email == "b@example.com")
                     .values(send_at=edge + timedelta(seconds=60)))
    slots = ledger.pending_slots(world, SAMPLE_DAY, until=edge)
    assert (section_mask(["world"]), edge) in slots and all(at != edge + timedelta(seconds=60) for _, at in slots)
    assert ledger.held(world, SAMPLE_DAY, until=edge) == (1, edge + timedelta(seconds=60))
    summary = run(world, settings, Scripted())
    assert summary.held == 1 and statuses(world)["b@example.com"] == "pending"
    assert summary.exit_code == 1
