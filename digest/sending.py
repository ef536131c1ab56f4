"""The send run: edition x subscribers -> batches -> a transport, with the ledger as truth.

Two entry points share the planning:
- `rehearse` (dry run, or SendGrid's sandbox): today's live audience, no ledger, nothing frozen.
- `send`: freezes the edition and its audience on first run, then delivers only the
  ledger's pending rows, claiming each batch before its request leaves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Callable, Iterable

from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.deliver import ledger
from digest.deliver.transport import Batch, FatalTransportError, Outcome, Recipient, Transport
from digest.edition import freeze, load_edition, release_send_lock, sender_name, take_send_lock, touch_send_lock
from digest.message import list_unsubscribe_headers
from digest.render import Personal, Renderer
from digest.select import Digest, Edition, select_digest, subscriber_sections
from subscribers import store as subscriber_store
from subscribers.tokens import Signer, manage_links

BATCH_SIZE = 1000  # SendGrid's limit of personalizations per request


@dataclass(frozen=True)
class Person:
    """Someone in the audience, as the planner needs them."""
    subscriber_id: int
    email: str
    name: str
    sections: tuple[str, ...]
    ledger_id: int | None = None


@dataclass
class Summary:
    date: str
    mode: str  # "dry-run" | "sandbox" | "send"
    recipients: int = 0        # people whose digest has at least one story
    delivered: int = 0         # .eml written / accepted by SendGrid in this run
    skipped_empty: int = 0     # active subscribers whose digest would be empty
    failed: int = 0            # in this run
    unknown: int = 0           # in this run
    withdrawn: int = 0         # left after the edition froze; not sent
    requests: int = 0          # batches handed to the transport
    stories: int = 0
    renders: int = 0           # full MJML renders (once per distinct digest)
    outbox: str | None = None
    counts: dict = field(default_factory=dict)   # the edition's ledger (send only)
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    fatal: str | None = None
    busy: str | None = None    # another run is sending this edition

    @property
    def exit_code(self) -> int:
        if self.fatal:
            return 2
        if self.busy:
            return 1
        if self.stories == 0:
            return 1  # no stories at all for the day is a failure worth a cron email
        if self.mode == "send":
            total = sum(self.counts.values())
            return 0 if self.counts.get("sent", 0) == total else 1
        return 0 if self.failed == 0 and self.unknown == 0 else 1

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items()}
        d["exit_code"] = self.exit_code
        if self.mode == "dry-run":
            d["emails_written"] = self.delivered
        elif self.mode == "send":
            d["sent"] = self.delivered
        return d


class Planner:
    """Turns people into batches of identical content, rendering each digest once."""

    def __init__(self, edition: Edition, settings: Settings, signer: Signer, renderer: Renderer | None = None):
        self.edition = edition
        self.settings = settings
        self.signer = signer
        self.renderer = renderer or Renderer(settings)
        self._digests: dict[tuple[str, ...], Digest] = {}

    def digest(self, sections: tuple[str, ...]) -> Digest:
        """The digest for one selection of sections; selected once per selection, not per person."""
        if sections not in self._digests:
            self._digests[sections] = select_digest(self.edition, sections, self.settings)
        return self._digests[sections]

    def recipient(self, p: Person) -> Recipient:
        prefs, unsub = manage_links(self.signer, self.settings.links_base, p.subscriber_id, p.email)
        return Recipient(
            subscriber_id=p.subscriber_id, email=p.email, name=p.name,
            substitutions=Personal(p.name, prefs, unsub).substitutions(),
            headers=list_unsubscribe_headers(unsub),
            custom_args={"edition": self.edition.date.isoformat(), "subscriber_id": str(p.subscriber_id)},
            ledger_id=p.ledger_id,
        )

    def batches(self, people: Iterable[Person]) -> tuple[list[Batch], list[Person]]:
        """Batches of at most BATCH_SIZE sharing one digest, and the people with an empty one."""
        groups: dict[tuple, Batch] = {}
        empty = []
        for p in people:
            digest = self.digest(p.sections)
            if digest.is_empty:
                empty.append(p)
                continue
            if digest.key not in groups:
                groups[digest.key] = Batch(self.renderer.render(digest), [], digest.key)
            groups[digest.key].recipients.append(self.recipient(p))
        out = []
        for batch in groups.values():
            for i in range(0, len(batch.recipients), BATCH_SIZE):
                out.append(Batch(batch.rendered, batch.recipients[i:i + BATCH_SIZE], batch.key))
        return out, empty


def active_people(engine: Engine, settings: Settings) -> list[Person]:
    return [Person(s.id, s.email, s.name, subscriber_sections(s.sections, settings))
            for s in subscriber_store.list_all(engine, status="active")]


def rehearse(engine: Engine, settings: Settings, day: date, transport: Transport, signer: Signer,
             mode: str = "dry-run", progress: Callable[[int], None] | None = None) -> Summary:
    """Everything but the ledger: build every message and hand it to `transport`."""
    edition = load_edition(engine, day, settings)
    summary = Summary(date=day.isoformat(), mode=mode, stories=len(edition.articles))
    planner = Planner(edition, settings, signer)
    batches, empty = planner.batches(active_people(engine, settings))
    summary.skipped_empty = len(empty)
    summary.recipients = sum(len(b.recipients) for b in batches)
    try:
        for batch in batches:
            _tally(summary, transport.deliver(batch))
            summary.requests += 1
            if progress:
                progress(len(batch.recipients))
    except FatalTransportError as e:
        _tally(summary, list(getattr(e, "done", [])))
        summary.fatal = str(e)
    _size_notes(summary, planner.renderer)
    return summary


def send(engine: Engine, settings: Settings, day: date, transport: Transport, signer: Signer,
         retry: str | None = None, progress: Callable[[int], None] | None = None,
         on_plan: Callable[[int], None] | None = None) -> Summary:
    """Deliver the edition of `day` to every pending ledger row; safe to rerun at any time."""
    edition = load_edition(engine, day, settings)
    summary = Summary(date=day.isoformat(), mode="send", stories=len(edition.articles))
    if not edition.articles:
        summary.counts = ledger.counts(engine, summary.date)
        return summary
    planner = Planner(edition, settings, signer)

    if not edition.frozen:
        # The audience: everyone active whose digest has a story (no messages built yet).
        people = active_people(engine, settings)
        audience = [(p.subscriber_id, p.email, p.name, p.sections) for p in people
                    if not planner.digest(p.sections).is_empty]
        if not freeze(engine, edition, audience):
            summary.notes.append("another run froze this edition first; continuing with its audience")
        else:
            summary.skipped_empty = len(people) - len(audience)
        edition = load_edition(engine, day, settings)
        planner = Planner(edition, settings, signer, planner.renderer)

    claim_id = ledger.new_claim()
    me = sender_name(claim_id)
    holder = take_send_lock(engine, day, me)
    if holder:
        summary.busy = f"another run is sending this edition: {holder}; nothing was done"
        summary.counts = ledger.counts(engine, summary.date)
        return summary
    try:
        return _send_pending(engine, day, transport, planner, summary, claim_id, me, retry, progress, on_plan)
    finally:
        release_send_lock(engine, day, me)


def _send_pending(engine, day, transport, planner, summary, claim_id, me, retry, progress, on_plan) -> Summary:
    """The locked part of `send`: requeue, withdraw, plan and deliver the pending rows."""
    if retry:
        n = ledger.requeue(engine, summary.date, retry)
        summary.notes.append(f"retrying {n} {retry} recipient(s)")

    pending = ledger.rows(engine, summary.date, status="pending")
    still_active = {s.id for s in subscriber_store.list_all(engine, status="active")}
    gone = {r.id for r in pending if r.subscriber_id not in still_active}
    if gone:
        ledger.withdraw(engine, gone)
        summary.withdrawn = len(gone)
    people = [Person(r.subscriber_id, r.email, r.name, r.sections, r.id) for r in pending if r.id not in gone]
    batches, _ = planner.batches(people)
    summary.recipients = sum(len(b.recipients) for b in batches)
    if on_plan:
        on_plan(summary.recipients)

    try:
        for batch in batches:
            taken = ledger.claim(engine, [r.ledger_id for r in batch.recipients], claim_id)
            batch = Batch(batch.rendered, [r for r in batch.recipients if r.ledger_id in taken], batch.key)
            if not batch.recipients:
                continue
            try:
                outcomes = transport.deliver(batch)
            except FatalTransportError as e:
                # Requests of this batch that finished before the refusal (a 413 half) are
                # recorded; the rest certainly never left, so they go back to pending.
                done = list(getattr(e, "done", []))
                if done:
                    ledger.record(engine, done)
                    _tally(summary, done)
                    summary.requests += 1
                ledger.release(engine, taken, claim_id)
                summary.fatal = str(e)
                break
            ledger.record(engine, outcomes)
            touch_send_lock(engine, day, me)
            _tally(summary, outcomes)
            summary.requests += 1
            if progress:
                progress(len(batch.recipients))
    finally:
        _size_notes(summary, planner.renderer)
        summary.counts = ledger.counts(engine, summary.date)
        summary.problems = ledger.problems(engine, summary.date)
    return summary


def _size_notes(summary: Summary, renderer: Renderer) -> None:
    summary.renders = renderer.renders
    for subject, size in renderer.oversized:
        summary.notes.append(f"the digest '{subject}' is {size:,} bytes of HTML even without teasers: "
                             "Gmail clips messages over 102 KB (lower per_section)")


def _tally(summary: Summary, outcomes: list[Outcome]) -> None:
    for o in outcomes:
        if o.status == "sent":
            summary.delivered += 1
        elif o.status == "failed":
            summary.failed += 1
            summary.problems.append({"email": o.recipient.email, "status": "failed", "reason": o.reason or ""})
        else:
            summary.unknown += 1
            summary.problems.append({"email": o.recipient.email, "status": "unknown", "reason": o.reason or ""})
