"""`digest send --workers N`: N sender processes on this host sharing one edition.

The parent does once what a send does once (freeze, requeue), starts N processes that
each run digest.sending.run_sender (claiming chunks under a lease of their own), watches
them, and reports the edition as they leave it.  A worker that dies has its lease ended
at once, so its rows in flight count as unknown (never resent by themselves); the other
workers go on with the rest.  Running `digest send` on several hosts against one
PostgreSQL database does the same without a parent: each run is a sender.

Processes, not threads: building a million personalized requests is Python work that
one process does on one core.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import sys
from datetime import date
from typing import Callable

from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.deliver import ledger
from digest.deliver.lease import end_dead_leases
from digest.deliver.transport import Transport
from digest.edition import load_edition
from digest.select import edition_key
from digest.sending import Summary, finish, prepare, send_rest, wait_for_other_senders
from digest.store import open_store
from digest.tokens import Signer


def log_to_stderr(message: str) -> None:
    """A transport's log line (retries, splits), saying which worker it comes from."""
    print(f"{mp.current_process().name}: {message}", file=sys.stderr, flush=True)


def send_with_workers(engine: Engine, settings: Settings, day: date, workers: int,
                      make_transport: Callable[[], Transport], retry: str | None = None,
                      refreeze: bool = False, progress: Callable[[int], None] | None = None,
                      on_plan: Callable[[int], None] | None = None, poll: float = 0.5,
                      weekly: bool = False) -> Summary:
    """Send the edition of `day` with `workers` processes; `make_transport` builds each
    worker's transport in that worker (so it must pickle: a class and its arguments)."""
    edition, summary = prepare(engine, settings, day, retry, refreeze,
                               getattr(make_transport(), "new_batch", None), weekly=weekly)
    if edition is None:
        return summary
    summary.workers = workers
    pending = ledger.pending(engine, summary.date)
    if on_plan:
        on_plan(pending)
    context = mp.get_context("spawn")  # a fresh interpreter: no inherited connections or threads
    results = context.Queue()
    procs = [context.Process(target=_worker, args=(settings, day, make_transport, results, weekly),
                             name=f"sender {i + 1}") for i in range(workers)]
    for p in procs:
        p.start()
    reports: dict[str, Summary] = {}
    dead: set[str] = set()
    try:
        while True:
            _collect(results, reports, timeout=poll)
            running = [p for p in procs if p.is_alive()]  # is_alive() also reaps the dead
            for p in procs:
                if p not in running and p.name not in reports and p.name not in dead and p.exitcode != 0:
                    dead.add(p.name)
                    ended = end_dead_leases(engine, summary.date)
                    summary.notes.append(f"{p.name} (pid {p.pid}) stopped with exit code {p.exitcode}; "
                                         f"its {ended} recipient(s) in flight are unknown")
            if progress:
                left = ledger.pending(engine, summary.date)
                progress(pending - left)
                pending = left
            if not running:
                _collect(results, reports, timeout=0)
                break
    finally:
        for p in procs:
            p.join()
    for report in reports.values():
        _merge(summary, report)
    if not summary.fatal and ledger.pending_slots(engine, summary.date):
        # Every worker died with rows left (or one died mid-claim as the others ended): the
        # parent is a sender too, so the run still ends with everyone sent or reported.
        summary.notes.append("no worker was left to send the rest: this process sent it")
        send_rest(engine, settings, edition, make_transport(), Signer(settings.secret_key), summary)
    else:
        wait_for_other_senders(engine, summary)
    finish(engine, summary)
    return summary


def _collect(results, reports: dict, timeout: float) -> None:
    try:
        while True:
            name, report = results.get(timeout=timeout)
            reports[name] = report
            timeout = 0
    except queue.Empty:
        pass


def _merge(summary: Summary, report: Summary) -> None:
    for counted in ("recipients", "delivered", "failed", "unknown", "withdrawn", "requests", "renders"):
        setattr(summary, counted, getattr(summary, counted) + getattr(report, counted))
    summary.digests = max(summary.digests, report.digests)
    summary.notes += [n for n in report.notes if n not in summary.notes]
    if report.fatal and not summary.fatal:
        summary.fatal, summary.fatal_code = report.fatal, report.fatal_code


def _worker(settings: Settings, day: date, make_transport: Callable[[], Transport], results,
            weekly: bool = False) -> None:
    """One sender process: the frozen edition, claimed chunk by chunk, until none is left."""
    name = mp.current_process().name
    summary = Summary(date=edition_key(day, weekly), mode="send", edition="weekly" if weekly else "daily")
    try:
        engine = open_store(settings.database_url, upgrade=False)
        edition = load_edition(engine, day, settings, weekly)
        summary.stories = len(edition.articles)
        send_rest(engine, settings, edition, make_transport(), Signer(settings.secret_key), summary)
    except Exception as e:  # noqa: BLE001 - reported by the parent, whatever it was
        summary.fatal = f"{name} stopped: {type(e).__name__}: {e}"
    results.put((name, summary))  # flushed by the queue's feeder thread before the process exits
