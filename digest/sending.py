"""The send run: a stream of ledger chunks -> batches -> a transport -> the ledger.

    send:      freeze (once per edition) -> for each digest with pending rows:
                   claim a chunk -> build its batch -> deliver (a few in flight) -> record
    rehearse:  the dry run (or SendGrid's sandbox): the live audience read in chunks,
               the same batches, no ledger, nothing frozen

Nothing holds the audience: memory is a few chunks, whatever the number of subscribers.
The loop depends on two seams only, digest.deliver.ledger and a Transport.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date
from typing import Callable, Iterator

from sqlalchemy import func, select, tuple_
from sqlalchemy.engine import Engine

from digest.config import Settings, mask_sections
from digest.deliver import ledger
from digest.deliver.transport import Batch, FatalTransportError, Outcome, Recipient, Transport
from digest.edition import (
    freeze, load_edition, release_send_lock, sender_name, take_send_lock, touch_send_lock,
)
from digest.edition import refreeze as refreeze_edition
from digest.message import ONE_CLICK
from digest.render import TOKENS, Rendered, RenderError, Renderer
from digest.select import Digest, Edition, resolved_mask, select_digest
from digest.store import subscribers
from subscribers.tokens import Signer

CHUNK = ledger.CHUNK
NAME_HTML, NAME_TEXT, TOKEN = TOKENS["name_html"], TOKENS["name_text"], TOKENS["token"]
_NEEDS_ESCAPE = re.compile("[&<>\"']")


@dataclass
class Summary:
    date: str
    mode: str  # "dry-run" | "sandbox" | "send"
    recipients: int = 0        # people handed to the transport in this run
    delivered: int = 0         # accepted by SendGrid (or .eml written) in this run
    skipped_empty: int = 0     # active subscribers whose digest would be empty
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
    fatal: str | None = None
    fatal_code: int = 2
    busy: str | None = None    # another run is sending this edition

    MAX_PROBLEMS = 1000  # listed in the summary; `digest status` lists them all

    @property
    def exit_code(self) -> int:
        if self.fatal:
            return self.fatal_code
        if self.busy:
            return 1
        if self.stories == 0:
            return 1  # no stories at all for the day is a failure worth a cron email
        if self.mode == "send":
            total = sum(self.counts.values())
            return 0 if self.counts.get("sent", 0) == total else 1
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

    def tally(self, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            if o.status == "sent":
                self.delivered += 1
                continue
            if o.status == "failed":
                self.failed += 1
            else:
                self.unknown += 1
            if len(self.problems) < self.MAX_PROBLEMS:
                self.problems.append({"email": o.recipient.email, "status": o.status, "reason": o.reason or ""})


class Planner:
    """Digests by section mask, and batches for rows: what every chunk needs, built once."""

    def __init__(self, edition: Edition, settings: Settings, signer: Signer, renderer: Renderer | None = None):
        self.edition = edition
        self.settings = settings
        self.signer = signer
        self.renderer = renderer or Renderer(settings)
        self.rendering = self.renderer.edition(edition)
        self._digests: dict[int, Digest] = {}
        self.base = settings.links_base.rstrip("/")
        # What every recipient shares goes once per request, not once per personalization.
        self.headers = dict(ONE_CLICK)
        self.custom_args = {"edition": edition.date.isoformat()}

    def digest(self, mask: int) -> Digest:
        """The digest of one resolved section mask (selected once per mask, not per person)."""
        if mask not in self._digests:
            self._digests[mask] = select_digest(self.edition, mask_sections(mask), self.settings)
        return self._digests[mask]

    def rendered(self, mask: int) -> Rendered:
        return self.rendering.render(self.digest(mask))

    def recipient(self, subscriber_id: int, email: str, name: str, ledger_id: int | None = None) -> Recipient:
        """The only per-recipient work: one signed token, the name, the unsubscribe header.

        Run a million times a morning, so written out: digest.render.Personal is the same
        rule (tests/test_send.py checks they agree).
        """
        token = self.signer.manage_token(subscriber_id, email)
        greeting = ", " + name if name else ""
        return Recipient(subscriber_id, email, name,
                         {NAME_HTML: html.escape(greeting) if _NEEDS_ESCAPE.search(greeting) else greeting,
                          NAME_TEXT: greeting, TOKEN: token},
                         {"List-Unsubscribe": f"<{self.base}/unsubscribe/{token}>"},
                         {"subscriber_id": str(subscriber_id)}, ledger_id)

    def batch(self, mask: int, people) -> Batch:
        """`people`: (subscriber_id, email, name, ledger_id) of one digest, at most CHUNK."""
        recipient = self.recipient
        return Batch(self.rendered(mask), [recipient(sid, email, name, lid) for sid, email, name, lid in people],
                     self.headers, self.custom_args)


# -- the real send ----------------------------------------------------------------------------

def send(engine: Engine, settings: Settings, day: date, transport: Transport, signer: Signer,
         retry: str | None = None, progress: Callable[[int], None] | None = None,
         on_plan: Callable[[int], None] | None = None, refreeze: bool = False) -> Summary:
    """Deliver the edition of `day` to every pending ledger row; safe to rerun at any time.

    `refreeze`: an edition already frozen takes the day's stories as stored now (see
    digest.edition.refreeze); rows already sent are untouched.
    """
    notes = []
    if refreeze:
        n = refreeze_edition(engine, day, settings)
        notes.append(f"the frozen edition now holds the {n} stories stored for {day.isoformat()}; "
                     "rows already sent are not sent again" if n is not None
                     else "--refreeze: the edition was not frozen yet; it is frozen now")
    edition = load_edition(engine, day, settings)
    summary = Summary(date=day.isoformat(), mode="send", stories=len(edition.articles), notes=notes)
    if not edition.articles:
        summary.counts = ledger.counts(engine, summary.date)
        return summary
    if not edition.frozen:
        started = time.perf_counter()
        frozen = freeze(engine, edition, settings)
        summary.freeze_seconds = round(time.perf_counter() - started, 3)
        edition = frozen.edition
        if frozen.audience is None:
            summary.notes.append("another run froze this edition first; continuing with its audience")
        else:
            summary.skipped_empty = frozen.skipped_empty

    planner = Planner(edition, settings, signer)
    claim_id = ledger.new_claim()
    me = sender_name(claim_id)
    holder = take_send_lock(engine, day, me)
    if holder:
        summary.busy = f"another run is sending this edition: {holder}; nothing was done"
        summary.counts = ledger.counts(engine, summary.date)
        return summary
    try:
        if retry:
            n = ledger.requeue(engine, summary.date, retry)
            summary.notes.append(f"retrying {n} {retry} recipient(s)")
        if on_plan:
            on_plan(ledger.counts(engine, summary.date)["pending"])
        summary.withdrawn += ledger.withdraw_departed(engine, summary.date)
        claimer = ledger.Claimer(engine, summary.date, claim_id)
        chunks = _claimed_batches(engine, summary, planner, claimer)
        alive = Heartbeat(lambda: touch_send_lock(engine, day, me))

        def record(outcomes):
            claimer.record(outcomes)
            alive.beat()

        _deliver(chunks, transport, settings.sendgrid_concurrency, summary, progress, record=record,
                 release=lambda rows: ledger.release(engine, [r.ledger_id for r in rows], claim_id))
        # Whoever left while the run went on was skipped by the claims; drop their rows now.
        summary.withdrawn += ledger.withdraw_departed(engine, summary.date)
    finally:
        release_send_lock(engine, day, me)
        _size_notes(summary, planner.renderer)
        summary.counts = ledger.counts(engine, summary.date)
        summary.problems = ledger.problems(engine, summary.date, limit=Summary.MAX_PROBLEMS)
    return summary


class Heartbeat:
    """Shows the sender is alive (its lock's last-seen time), at most every `every` seconds."""

    def __init__(self, touch: Callable[[], None], every: float = 10.0):
        self.touch, self.every, self.last = touch, every, time.monotonic()

    def beat(self) -> None:
        if time.monotonic() - self.last >= self.every:
            self.touch()
            self.last = time.monotonic()


def _claimed_batches(engine: Engine, summary: Summary, planner: Planner,
                     claimer: ledger.Claimer) -> Iterator[Batch | list[Outcome]]:
    """Claim chunk after chunk, digest by digest; yield each as a Batch ready to deliver.

    A digest that cannot be rendered yields its rows' `failed` outcomes instead (recorded
    like any other), so one broken story fails its own readers, not the run.
    """
    day = summary.date
    for mask in ledger.pending_masks(engine, day):
        summary.digests += 1
        after = 0
        while True:
            chunk = claimer.claim(mask, after)
            if not chunk.rows:
                break
            after = chunk.rows[-1].id
            people = [(r.subscriber_id, r.email, r.name, r.id) for r in chunk.rows]
            try:
                yield planner.batch(mask, people)
            except RenderError as e:
                yield [Outcome(Recipient(sid, email, name, {}, {}, {}, lid), "failed", reason=str(e))
                       for sid, email, name, lid in people]


def _deliver(batches: Iterator[Batch | list[Outcome]], transport: Transport, concurrency: int, summary: Summary,
             progress, record: Callable[[list[Outcome]], None], release: Callable[[list[Recipient]], None]) -> None:
    """Keep up to `concurrency` batches in flight; record each outcome as it returns.

    A batch is taken from `batches` (which claims it) only when a slot is free, so every
    claimed row is on its way at once.  Ledger writes stay on this thread: one writer,
    in order.  A FatalTransportError stops taking batches; those still in flight finish
    and are recorded, and the fatal batch's unsent rows go back to pending.
    """
    running: dict[Future, Batch] = {}

    def settle(block: bool) -> None:
        done, _ = wait(running, return_when=FIRST_COMPLETED) if block else (set(), None)
        for future in done:
            batch = running.pop(future)
            try:
                outcomes = future.result()
            except FatalTransportError as e:
                settled = list(e.done)
                record(settled)
                summary.tally(settled)
                finished = {id(o.recipient) for o in settled}
                release([r for r in batch.recipients if id(r) not in finished])
                if not summary.fatal:
                    summary.fatal, summary.fatal_code = str(e), e.exit_code
                continue
            except Exception as e:  # a bug, not SendGrid: the request may have left
                outcomes = [Outcome(r, "unknown", reason=f"the sender failed mid-request ({type(e).__name__}: {e}); "
                                                          "the request may have left")
                            for r in batch.recipients]
                if not summary.fatal:
                    summary.fatal, summary.fatal_code = f"internal error: {type(e).__name__}: {e}", 2
            record(outcomes)
            summary.tally(outcomes)
            summary.requests += 1
            if progress:
                progress(len(outcomes))

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="deliver") as pool:
        while not summary.fatal:
            while len(running) >= concurrency:
                settle(block=True)
            if summary.fatal:
                break
            batch = next(batches, None)
            if batch is None:
                break
            if isinstance(batch, list):  # outcomes settled without a request (render failure)
                record(batch)
                summary.tally(batch)
                continue
            summary.recipients += len(batch.recipients)
            running[pool.submit(transport.deliver, batch)] = batch
        while running:
            settle(block=True)


# -- rehearsals: dry run and sandbox ------------------------------------------------------------

def active_chunks(engine: Engine, size: int = CHUNK) -> Iterator[list[tuple[int, str, str, int]]]:
    """The active audience in chunks, ordered by (section mask, id): keyset pagination."""
    q = (select(subscribers.c.id, subscribers.c.email, subscribers.c.name, subscribers.c.section_mask)
         .where(subscribers.c.status == "active").order_by(subscribers.c.section_mask, subscribers.c.id).limit(size))
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
             sample: int | None = None) -> Summary:
    """Everything but the ledger: build every recipient's message, hand them to `transport`.

    With `sample`, every recipient is still built (and every request body encoded and
    checked against SendGrid's limits), but only about `sample` of them, spread evenly
    over the distinct digests, are handed to the transport.
    """
    edition = load_edition(engine, day, settings)
    summary = Summary(date=day.isoformat(), mode=mode, stories=len(edition.articles), sample=sample)
    planner = Planner(edition, settings, signer)
    quota = None
    if sample is not None:
        with engine.connect() as conn:
            n = conn.execute(select(func.count(subscribers.c.section_mask.distinct()))
                             .where(subscribers.c.status == "active")).scalar_one()
        quota = max(1, math.ceil(sample / max(n, 1)))
    taken: dict[int, int] = {}
    seen: set[int] = set()

    def batches() -> Iterator[Batch | list[Outcome]]:
        for rows in active_chunks(engine):
            for mask, group in _by_mask(rows, settings):
                digest = planner.digest(mask)
                if digest.is_empty:
                    summary.skipped_empty += len(group)
                    continue
                if mask not in seen:
                    seen.add(mask)
                    summary.digests += 1
                try:
                    batch = planner.batch(mask, group)
                    if quota is not None:
                        check_request(batch, settings)
                except RenderError as e:
                    yield [Outcome(Recipient(sid, email, name, {}, {}, {}), "failed", reason=str(e))
                           for sid, email, name, _ in group]
                    continue
                if quota is not None:
                    room = min(quota - taken.get(mask, 0), sample - sum(taken.values()))
                    built = len(batch.recipients)
                    batch.recipients = batch.recipients[:max(room, 0)]
                    taken[mask] = taken.get(mask, 0) + len(batch.recipients)
                    summary.recipients += built - len(batch.recipients)  # built and checked, not written
                    if not batch.recipients:
                        continue
                yield batch

    _deliver(batches(), transport, 1 if mode == "dry-run" else settings.sendgrid_concurrency, summary, progress,
             record=lambda outcomes: None, release=lambda rows: None)
    _size_notes(summary, planner.renderer)
    return summary


def _by_mask(rows, settings: Settings):
    """Split a chunk (ordered by chosen mask) into runs of one resolved mask."""
    group, current = [], None
    for sid, email, name, chosen in rows:
        mask = resolved_mask(chosen, settings)
        if mask != current and group:
            yield current, group
            group = []
        current = mask
        group.append((sid, email, name, None))
    if group:
        yield current, group


def check_request(batch: Batch, settings: Settings) -> None:
    """Encode the request SendGrid would get for `batch` and check it is within its limits."""
    from digest.deliver.sendgrid import MAX_REQUEST_BYTES, request_body
    size = len(json.dumps(request_body(settings, batch.rendered, batch)))
    if size > MAX_REQUEST_BYTES:
        raise RenderError(f"the request for this digest would be {size:,} bytes, over SendGrid's 30 MB")


def _size_notes(summary: Summary, renderer: Renderer) -> None:
    summary.renders = renderer.renders
    for subject, size in renderer.oversized:
        summary.notes.append(f"the digest '{subject}' is {size:,} bytes of HTML even without teasers: "
                             "Gmail clips messages over 102 KB (lower per_section)")

