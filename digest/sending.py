"""The send run: a stream of ledger chunks -> batches -> a transport -> the ledger.

    send:      freeze (once per edition) -> for each digest with pending rows:
                   claim a chunk -> build its batch -> deliver (a few in flight) -> record
    rehearse:  the dry run (or SendGrid's sandbox): the live audience read in chunks,
               the same batches, no ledger, nothing frozen

Nothing holds the audience: memory is a few chunks, whatever the number of subscribers.
The loop depends on two seams only, digest.deliver.ledger and a Transport.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Callable, Iterator, Sequence

from sqlalchemy import select, tuple_
from sqlalchemy.engine import Engine, Row

from digest.config import Settings
from digest.deliver import ledger
from digest.deliver.lease import Lease, end_dead_leases
from digest.deliver.lease import report as ledger_report
from digest.deliver.transport import Batch, FatalTransportError, Transport
from digest.deliver.workers import MAX_PROBLEMS, Builder, Pool, Settled
from digest.edition import freeze, is_frozen, load_edition
from digest.edition import refreeze as refreeze_edition
from digest.message import shared_headers
from digest.render import Rendered, Renderer, RenderError
from digest.select import Digest, Edition, digest_for_mask, edition_key, resolved_mask
from digest.store import subscribers
from digest.tokens import Signer

CHUNK = ledger.CHUNK


@dataclass
class Summary:
    date: str  # the edition's key: the day (2026-11-25), or weekly-2026-11-25 for the weekly edition
    mode: str  # "dry-run" | "sandbox" | "send"
    edition: str = "daily"  # "daily" | "weekly"
    recipients: int = 0        # people handed to the transport in this run
    delivered: int = 0         # accepted by SendGrid (or .eml written) in this run
    skipped_empty: int = 0     # active subscribers whose digest would be empty
    skipped_lead_only: int = 0  # whose digest would hold only the lead story (send_lead_only off)
    failed: int = 0            # in this run
    unknown: int = 0           # in this run
    withdrawn: int = 0         # left after the edition froze; not sent
    requests: int = 0          # batches handed to the transport
    stories: int = 0
    digests: int = 0           # distinct digests (section sets) among the recipients
    renders: int = 0           # MJML + premailer runs (once per edition)
    outbox: str | None = None
    sample: int | None = None  # dry run: how many .eml files were asked for (None: all)
    counts: dict = field(default_factory=dict)   # the edition's ledger (send only)
    freeze_seconds: float | None = None  # how long freezing took, when this run froze
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    warnings: list = field(default_factory=list)  # about the settings of a real send (send_warnings)
    fatal: str | None = None
    fatal_code: int = 2
    workers: int = 1           # sender processes this run started (send --workers)
    scheduled: int = 0         # the edition's rows sent with a send_at still ahead (send only)
    held: int = 0              # pending rows due more than 72 hours ahead: a later run sends them
    held_until: str | None = None  # from when (UTC) a run can send the first of them
    batch_id: str | None = None    # the edition's SendGrid batch (send only)

    MAX_PROBLEMS = MAX_PROBLEMS  # listed in the summary; `digest status` lists them all

    @property
    def exit_code(self) -> int:
        if self.fatal:
            return self.fatal_code
        if self.stories == 0:
            return 1  # no stories at all for the day is a failure worth a cron email
        if self.mode == "send":
            return 0 if ledger.all_sent(self.counts) else 1
        return 0 if self.failed == 0 and self.unknown == 0 else 1

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "fatal_code"}
        d["exit_code"] = self.exit_code
        if self.mode == "dry-run":
            d["emails_written"] = d.pop("delivered")
            d.pop("requests")
        elif self.mode == "send":
            d["sent"] = self.delivered
        return d

    def add(self, settled: Settled) -> None:
        self.delivered += settled.sent
        self.failed += settled.failed
        self.unknown += settled.unknown
        self.problems += settled.problems[:max(0, self.MAX_PROBLEMS - len(self.problems))]
        if settled.fatal and not self.fatal:
            self.fatal, self.fatal_code = settled.fatal, settled.fatal_code


class Planner:
    """Digests by section mask, and batches for rows: what every chunk needs, built once."""

    def __init__(self, edition: Edition, settings: Settings, signer: Signer, renderer: Renderer | None = None):
        self.edition = edition
        self.settings = settings
        self.renderer = renderer or Renderer(settings)
        self.rendering = self.renderer.edition(edition)
        self.builder = Builder(signer, settings.links_base, edition.key, shared_headers(settings))
        self.headers, self.custom_args = self.builder.headers, self.builder.custom_args
        self.batch_id: str | None = None  # the edition's SendGrid batch, when it has one
        self._digests: dict[int, Digest] = {}

    def digest(self, mask: int) -> Digest:
        """The digest of one resolved section mask (selected once per mask, not per person)."""
        if mask not in self._digests:
            self._digests[mask] = digest_for_mask(self.edition, mask, self.settings)
        return self._digests[mask]

    def sent(self, digest: Digest) -> bool:
        """Whether a digest goes out at all: not empty, and not the lead only unless send_lead_only."""
        return not digest.is_empty and (self.settings.send_lead_only or not digest.lead_only)

    def rendered(self, mask: int) -> Rendered:
        return self.rendering.render(self.digest(mask))

    def recipient(self, subscriber_id: int, email: str, name: str, ledger_id: int | None = None):
        return self.builder.recipient(subscriber_id, email, name, ledger_id)

    def batch(self, mask: int, people, send_at: datetime | None = None) -> Batch:
        """`people`: (subscriber_id, email, name, ledger_id) of one digest due at `send_at`, at most CHUNK."""
        batch = self.builder.batch(self.rendered(mask), people)
        batch.send_at, batch.batch_id = send_at, self.batch_id
        return batch


@dataclass
class EditionStatus:
    """`digest status`: the edition's ledger (ledger.report's shape), and whether it was frozen."""
    report: dict
    frozen: bool

    @property
    def exit_code(self) -> int:
        """0 only when the edition was sent to everyone: the rule `send` exits by."""
        return 0 if self.frozen and ledger.all_sent(self.report["counts"]) else 1


def status(engine: Engine, day: date, weekly: bool = False) -> EditionStatus:
    """The ledger of the edition of `day` (`weekly`: the weekly edition of the week to `day`),
    ending the leases of this host's dead senders first."""
    return EditionStatus(ledger_report(engine, edition_key(day, weekly)), is_frozen(engine, day, weekly))


def _kind(weekly: bool) -> str:
    return "weekly" if weekly else "daily"


# -- the real send ----------------------------------------------------------------------------

def send(engine: Engine, settings: Settings, day: date, transport: Transport, signer: Signer,
         retry: str | None = None, progress: Callable[[int], None] | None = None,
         on_plan: Callable[[int], None] | None = None, refreeze: bool = False, weekly: bool = False) -> Summary:
    """Deliver the edition of `day` (`weekly`: the weekly edition of the week to `day`) to
    every pending ledger row due within SendGrid's 72 hours; safe to rerun at any time, and
    to run on several hosts at once (each claims chunks of its own; see `lease`).

    `refreeze`: an edition already frozen takes the day's stories as stored now (see
    digest.edition.refreeze); rows already sent are untouched.  A transport that can make
    SendGrid batches (`new_batch`) gives the edition one, which every request carries.
    """
    edition, summary = prepare(engine, settings, day, retry, refreeze, getattr(transport, "new_batch", None),
                               weekly=weekly)
    if edition is None:
        return summary
    if on_plan:
        on_plan(ledger.pending(engine, summary.date))
    try:
        send_rest(engine, settings, edition, transport, signer, summary, progress)
    finally:
        finish(engine, summary)
    return summary


def send_rest(engine: Engine, settings: Settings, edition: Edition, transport: Transport, signer: Signer,
              summary: Summary, progress: Callable[[int], None] | None = None) -> None:
    """Send until no pending row is left, then wait for the other senders of the edition.

    Again if rows turn pending meanwhile: a sender killed in the middle of its claim
    (PostgreSQL rolls the claim back when its connection drops) leaves the rows it was
    taking pending, after the others had skipped them as locked.
    """
    while True:
        run_sender(engine, settings, edition, transport, signer, summary, progress)
        wait_for_other_senders(engine, summary)
        if summary.fatal or not ledger.pending_slots(engine, summary.date):
            return


def send_warnings(settings: Settings) -> list[str]:
    """What is legal or deliverable only by luck in the settings of a real send."""
    found = []
    if not settings.postal_address:
        found.append("postal_address is not set in digest.toml: bulk-mail law (CAN-SPAM, and the like "
                     "elsewhere) wants the sender's postal address in every message's footer")
    return found


def prepare(engine: Engine, settings: Settings, day: date, retry: str | None = None,
            refreeze: bool = False, new_batch: Callable[[], str] | None = None,
            weekly: bool = False) -> tuple[Edition | None, Summary]:
    """What a send does once, before any sender claims: refreeze, freeze, requeue, and the
    edition's SendGrid batch id (`new_batch` makes one; the first stored stays).

    Returns the edition as it will be sent (None when the day has no stories, or when no
    batch id could be had: then the summary's `fatal` says why) and the run's summary so far.
    """
    notes = []
    if refreeze:
        n = refreeze_edition(engine, day, settings, weekly)
        notes.append(f"the frozen edition now holds the {n} stories stored for {edition_key(day, weekly)}; "
                     "rows already sent are not sent again" if n is not None
                     else "--refreeze: the edition was not frozen yet; it is frozen now")
    edition = load_edition(engine, day, settings, weekly)
    summary = Summary(date=edition.key, mode="send", edition=_kind(weekly), stories=len(edition.articles),
                      notes=notes, warnings=send_warnings(settings))
    if not edition.articles:
        summary.counts = ledger.counts(engine, summary.date)
        return None, summary
    if not edition.frozen:
        started = time.perf_counter()
        frozen = freeze(engine, edition, settings)
        summary.freeze_seconds = round(time.perf_counter() - started, 3)
        edition = frozen.edition
        if frozen.audience is None:
            summary.notes.append("another run froze this edition first; continuing with its audience")
        else:
            summary.skipped_empty = frozen.skipped_empty
            summary.skipped_lead_only = frozen.skipped_lead_only
    if retry:
        end_dead_leases(engine, summary.date)  # a run killed on this host: its rows are retried too
        n = ledger.requeue(engine, summary.date, retry)
        summary.notes.append(f"retrying {n} {retry} recipient(s)")
        if retry == "unknown":
            busy = sum(n for _, n, _ in ledger.in_flight(engine, summary.date))
            if busy:
                summary.notes.append(f"{busy} unknown recipient(s) are in flight at a live sender: not retried")
    summary.withdrawn += ledger.withdraw_departed(engine, summary.date)
    if new_batch is not None and (not weekly or ledger.pending(engine, summary.date)):
        # (A weekly edition nobody is due for today needs no SendGrid batch.)
        try:
            summary.batch_id = ledger.edition_batch(engine, summary.date, new_batch)
        except FatalTransportError as e:
            summary.fatal, summary.fatal_code = str(e), e.exit_code
            finish(engine, summary)
            return None, summary
    return edition, summary


def run_sender(engine: Engine, settings: Settings, edition: Edition, transport: Transport, signer: Signer,
               summary: Summary, progress: Callable[[int], None] | None = None,
               lease: Lease | None = None) -> None:
    """One sender: claim chunk after chunk under a lease, deliver them, record outcomes."""
    planner = Planner(edition, settings, signer)
    planner.batch_id = ledger.batch_of(engine, summary.date)
    lease = lease or Lease(engine, summary.date)
    try:
        claimer = ledger.Claimer(engine, summary.date, lease.name, lambda: lease.until)

        def record(settled: Settled) -> None:
            claimer.record_groups(settled.groups)
            ledger.release(engine, settled.unsent, lease.name)

        with lease, claimer, Pool(planner, transport, settings.sendgrid_concurrency, lease.valid) as pool:
            _deliver(_claimed_jobs(engine, summary, claimer), pool, summary, progress, record)
        # Whoever left while the run went on was skipped by the claims; drop their rows now.
        summary.withdrawn += ledger.withdraw_departed(engine, summary.date)
    finally:
        _size_notes(summary, planner.renderer)


def wait_for_other_senders(engine: Engine, summary: Summary, poll: float = 0.5) -> None:
    """Nothing left to claim: wait for the senders still at work on this edition, so the
    counts (and the exit status) this run reports are final.  Dead senders of this host
    are noticed at once; elsewhere a dead sender is noticed when its lease runs out."""
    waited = time.monotonic()
    while not summary.fatal:
        end_dead_leases(engine, summary.date)
        if not ledger.in_flight(engine, summary.date):
            break
        time.sleep(poll)
    seconds = time.monotonic() - waited
    if seconds >= 1:
        summary.notes.append(f"waited {seconds:.0f} s for other senders of this edition to finish")


def finish(engine: Engine, summary: Summary) -> None:
    """The edition's ledger as the summary reports it, and the rows left for a later run."""
    summary.counts = ledger.counts(engine, summary.date)
    summary.problems = ledger.problems(engine, summary.date, limit=Summary.MAX_PROBLEMS)
    summary.scheduled = ledger.scheduled(engine, summary.date)
    summary.held, first = ledger.held(engine, summary.date)
    summary.held_until = None
    if summary.held and first is not None:
        summary.held_until = f"{first - ledger.HORIZON:%Y-%m-%d %H:%M} UTC"
        summary.notes.append(f"{summary.held} recipient(s) are due from {first:%Y-%m-%d %H:%M} UTC, more than 72 "
                             f"hours ahead (SendGrid's limit): they stay pending; run `digest send --date "
                             f"{summary.date}` again from {summary.held_until}")


Job = tuple  # (section mask, people, prebuilt batch or None, send_at or None)


def _claimed_jobs(engine: Engine, summary: Summary, claimer: ledger.Claimer) -> Iterator[Job]:
    """Claim chunk after chunk, digest by digest and due time by due time ((section mask,
    send_at) by (section mask, send_at), the soonest due first), pass after pass until no
    pending row due within SendGrid's 72 hours is left.

    One pass may leave some: rows another sender was claiming at that moment are skipped
    as locked (SKIP LOCKED), and come back pending if that sender dies before its claim
    commits.  Rows of people who left are dropped between passes, so they cannot keep a
    pass going.
    """
    seen: set[int] = set()
    while True:
        took = False
        for mask, send_at in ledger.pending_slots(engine, summary.date):
            if mask not in seen:
                seen.add(mask)
                summary.digests += 1
            while True:
                chunk = claimer.claim(mask, send_at)
                if not chunk.rows:
                    break
                took = True
                yield mask, [(r.subscriber_id, r.email, r.name, r.id) for r in chunk.rows], None, send_at
                if len(chunk.rows) < claimer.size:
                    # A short chunk took what was left of the range: no empty claim to find it out
                    # (rows skipped as locked elsewhere come back in the next pass).
                    break
        summary.withdrawn += ledger.withdraw_departed(engine, summary.date)
        if not ledger.pending_slots(engine, summary.date):
            return
        if not took:
            time.sleep(0.2)  # locked by a claim in progress elsewhere: it commits, or rolls back


def _deliver(jobs: Iterator[Job], pool: Pool, summary: Summary, progress, record: Callable[[Settled], None]) -> None:
    """Keep up to `pool.size` batches in flight; record each one's outcomes as it returns.

    A job is taken from `jobs` (which claims its rows) only when a slot is free, so every
    claimed row is on its way at once.  Ledger writes stay on this thread: one writer,
    in order.  A fatal outcome (the key refused, SendGrid unreachable) stops taking jobs;
    those in flight finish and are recorded, and rows never sent go back to pending.
    """
    running: set[Future] = set()

    def settle(settled: Settled) -> None:
        record(settled)
        summary.add(settled)
        summary.requests += 1 if settled.count else 0
        if progress:
            progress(settled.count)

    def wait_one() -> None:
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            running.discard(future)
            settle(future.result())

    while not summary.fatal:
        while len(running) >= pool.size:
            wait_one()
        if summary.fatal:
            break
        job = next(jobs, None)
        if job is None:
            break
        mask, people, batch, send_at = job
        summary.recipients += len(people) if batch is None else len(batch.recipients)
        running.add(pool.submit(mask, people, batch, send_at))
    while running:
        wait_one()


# -- rehearsals: dry run and sandbox ------------------------------------------------------------

def active_chunks(engine: Engine, size: int = CHUNK,
                  schedule: ledger.Schedule | None = None) -> Iterator[Sequence[Row]]:
    """The active audience in chunks, ordered by (section mask, id): keyset pagination.

    With a `schedule`, the audience a freeze would write (ledger.Schedule: daily, not
    paused), each row with the time it is due as a fifth column.
    """
    columns: list = [subscribers.c.id, subscribers.c.email, subscribers.c.name, subscribers.c.section_mask]
    if schedule is not None:
        columns.append(schedule.due.label("due"))
    q = select(*columns)
    q = q.where(subscribers.c.status == "active") if schedule is None else \
        q.select_from(schedule.source).where(schedule.audience)
    q = q.order_by(subscribers.c.section_mask, subscribers.c.id).limit(size)
    last = (-1, 0)
    while True:
        with engine.connect() as conn:
            rows = conn.execute(q.where(tuple_(subscribers.c.section_mask, subscribers.c.id) > last)).all()
        if not rows:
            return
        yield rows
        last = (rows[-1].section_mask, rows[-1].id)


def rehearse(engine: Engine, settings: Settings, day: date, transport: Transport, signer: Signer,
             mode: str = "dry-run", progress: Callable[[int], None] | None = None,
             sample: int | None = None, weekly: bool = False) -> Summary:
    """Everything but the ledger: build every recipient's message, hand them to `transport`.

    With `sample`, every recipient is still built (and every request body encoded and
    checked against SendGrid's limits), but only about `sample` of them, spread evenly
    over the distinct digests, are handed to the transport.
    """
    edition = load_edition(engine, day, settings, weekly)
    summary = Summary(date=edition.key, mode=mode, edition=_kind(weekly), stories=len(edition.articles), sample=sample,
                      warnings=send_warnings(settings) if mode != "dry-run" else [])
    planner = Planner(edition, settings, signer)
    with engine.connect() as conn:  # the same audience and due times a freeze would write
        schedule = ledger.Schedule(conn, day, settings, weekly=weekly)
    if sample is not None:
        with engine.connect() as conn:  # the distinct section sets: a few thousand at most
            chosen = conn.execute(select(subscribers.c.section_mask).distinct().select_from(schedule.source)
                                  .where(schedule.audience)).scalars().all()
            digests = {resolved_mask(m, settings) for m in chosen}
        n = sum(1 for m in digests if planner.sent(planner.digest(m)))
        # Every digest gets sample // n files, the first sample % n digests one more: when
        # the sample is at least the number of digests, each digest has one.
        base, extra = divmod(sample, max(n, 1))

        def quota(index: int) -> int:
            return base + (1 if index < extra else 0)
    taken: dict[int, int] = {}
    written = [0]
    order: dict[int, int] = {}  # digest -> its position among the digests met so far

    until = ledger.horizon()

    def jobs() -> Iterator[Job]:
        for rows in active_chunks(engine, schedule=schedule):
            for mask, send_at, group in _by_mask(rows, settings):
                if mode == "sandbox" and send_at is not None and send_at > until:
                    summary.held += len(group)  # SendGrid would refuse a send_at that far ahead
                    continue
                digest = planner.digest(mask)
                if digest.is_empty:
                    summary.skipped_empty += len(group)
                    continue
                if digest.lead_only and not settings.send_lead_only:
                    summary.skipped_lead_only += len(group)
                    continue
                if mask not in order:
                    order[mask] = len(order)
                    summary.digests += 1
                if sample is None:
                    yield mask, group, None, send_at
                    continue
                # A sample: build and check everyone's request, hand over only the sample.
                try:
                    batch = planner.batch(mask, group, send_at)
                except RenderError:
                    yield mask, group, None, send_at  # fails them, with the reason
                    continue
                problem = check_request(batch, settings)
                if problem:
                    summary.add(Settled.failing(group, problem))
                    continue
                room = max(0, min(quota(order[mask]) - taken.get(mask, 0), sample - written[0]))
                summary.recipients += len(group) - room  # built and checked, not written
                if room:
                    taken[mask] = taken.get(mask, 0) + room
                    written[0] += room
                    batch.recipients = batch.recipients[:room]
                    yield mask, group[:room], batch, send_at

    concurrency = 1 if mode == "dry-run" else settings.sendgrid_concurrency
    with Pool(planner, transport, concurrency) as pool:
        _deliver(jobs(), pool, summary, progress, record=lambda settled: None)
    _size_notes(summary, planner.renderer)
    return summary


def _by_mask(rows, settings: Settings):
    """Split a chunk (ordered by chosen mask) into runs of one resolved mask and one due
    time: (mask, send_at, people)."""
    group: list[tuple[int, str, str, None]] = []
    current: tuple = (None, None)
    chosen_now, mask = None, None
    for sid, email, name, chosen, *due in rows:
        if chosen != chosen_now:  # rows come ordered by chosen mask: resolve once per run
            chosen_now, mask = chosen, resolved_mask(chosen, settings)
        key = (mask, due[0] if due else None)
        if key != current and group:
            yield current[0], current[1], group
            group = []
        current = key
        group.append((sid, email, name, None))
    if group:
        yield current[0], current[1], group


def check_request(batch: Batch, settings: Settings) -> str | None:
    """Encode the request SendGrid would get for `batch`; what is wrong with it, if anything."""
    from digest.deliver.sendgrid import MAX_REQUEST_BYTES, request_body
    size = len(json.dumps(request_body(settings, batch.rendered, batch)))
    if size > MAX_REQUEST_BYTES:
        return f"the request for this digest would be {size:,} bytes, over SendGrid's 30 MB"
    return None


def _size_notes(summary: Summary, renderer: Renderer) -> None:
    summary.renders = renderer.renders
    for subject, size in renderer.oversized:
        summary.notes.append(f"the digest '{subject}' is {size:,} bytes of HTML even without teasers: "
                             "Gmail clips messages over 102 KB (lower per_section)")

