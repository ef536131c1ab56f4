"""`digest send` as one call: which mode, transport and signer a send uses.

    dry-run   build every message, write .eml files to the outbox; no ledger, nothing frozen
    sandbox   SendGrid's sandbox mode: every request validated, nothing delivered or recorded
    send      the real send through SendGrid: one process (digest.sending.send), or
              `workers` processes on this host (digest.senders.send_with_workers)
    test      `--test-to`: one digest's message to editors, marked [TEST] (digest.testsend)

The option rules (what goes with which mode) are here too, with the messages `digest
send` prints for them.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Callable

from sqlalchemy.engine import Engine

from digest import sending
from digest.config import ConfigError, Settings
from digest.deliver.outbox import OutboxTransport
from digest.deliver.sendgrid import SendGridTransport, check_ready
from digest.edition import is_frozen
from digest.select import edition_key
from digest.senders import log_to_stderr, send_with_workers
from digest.sending import Summary
from digest.store import open_store
from digest.testsend import TestSend, send_test
from digest.tokens import link_signer

MODES = ("dry-run", "sandbox", "send")
# `digest send --edition`: both (the default) sends the daily edition, then the weekly one.
EDITIONS = ("daily", "weekly", "both")


class SendOptionsError(ConfigError):
    """Options that do not go together; nothing was done."""


def _quiet(message: str) -> None:
    """Where notes go when the caller does not want them."""


def check_options(mode: str, *, retry: str | None = None, refreeze: bool = False, workers: int = 1,
                  sample: int | None = None, outbox: Path | str | None = None) -> None:
    """SendOptionsError unless the options go with `mode`."""
    if mode not in MODES:
        raise SendOptionsError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")
    if mode == "dry-run" and retry:
        raise SendOptionsError("--dry-run cannot be combined with --retry or --sandbox")
    if mode == "sandbox" and retry:
        raise SendOptionsError("--sandbox cannot be combined with --retry")
    if outbox and mode != "dry-run":
        raise SendOptionsError("--outbox goes with --dry-run (a real send writes no files)")
    if sample is not None and mode != "dry-run":
        raise SendOptionsError("--sample goes with --dry-run")
    if refreeze and mode != "send":
        raise SendOptionsError("--refreeze goes with a real send (a dry run freezes nothing)")
    if workers > 1 and mode != "send":
        raise SendOptionsError("--workers goes with a real send (a dry run or sandbox run is one process)")


def check_fresh(engine: Engine, settings: Settings, day: date, weekly: bool = False) -> None:
    """SendOptionsError when a real send would *start* the edition of a day other than today
    or yesterday in the newsletter's time zone: a typo in --date, or a cron line left
    behind, must not mail a week-old "Good morning".  An edition already started is a
    retry, and goes on."""
    today = settings.today()
    if day in (today, today - timedelta(days=1)) or is_frozen(engine, day, weekly):
        return
    ago = (today - day).days
    when = f"{ago} days old" if ago > 0 else f"{-ago} day{'s' if ago < -1 else ''} ahead"
    raise SendOptionsError(f"the edition of {day} is {when} (today is {today} in {settings.timezone}) and its "
                           "send has not started: add --yes to start it anyway")


def run_editions(settings: Settings, day: date, edition: str = "both", **options) -> list[Summary]:
    """`digest send`: the daily edition of `day`, then the weekly one (`edition`: which;
    "both" runs the weekly edition only when the store has weekly readers at all, so a
    newsletter without any makes no weekly edition).  One Summary per edition run; the
    options are run's, for each."""
    if edition not in EDITIONS:
        raise SendOptionsError(f"unknown edition {edition!r} (one of {', '.join(EDITIONS)})")
    done = []
    if edition in ("daily", "both"):
        done.append(run(settings, day, **options))
        if done[0].fatal:  # the key refused, SendGrid unreachable: the weekly run would fail alike
            return done
    if edition == "weekly" or (edition == "both" and has_weekly_readers(settings)):
        done.append(run(settings, day, weekly=True, **options))
    return done


def has_weekly_readers(settings: Settings) -> bool:
    """Whether any active reader chose the weekly digest (on any weekday)."""
    from sqlalchemy import select

    from digest.store import subscribers
    engine = open_store(settings.database_url)
    with engine.connect() as conn:
        q = select(subscribers.c.id).where(subscribers.c.status == "active", subscribers.c.cadence == "weekly")
        return conn.execute(q.limit(1)).first() is not None


def run(settings: Settings, day: date, *, mode: str = "send", retry: str | None = None, refreeze: bool = False,
        workers: int = 1, sample: int | None = None, outbox: Path | str | None = None,
        notify: Callable[[str], None] = _quiet, progress: Callable[[int], None] | None = None,
        on_plan: Callable[[int], None] | None = None, log: Callable[[str], None] | None = None,
        yes: bool = False, weekly: bool = False) -> Summary:
    """Run the send of the edition of `day` in `mode`; its Summary (whose exit_code is the run's).

    ConfigError (a SendOptionsError among them) or StoreError when nothing could be done:
    options that do not go together, a missing key, an outbox that cannot be written, a
    store that cannot be opened.  `notify` gets the lines worth telling the operator
    before the run (a throwaway signing key, links nobody can reach); `progress`,
    `on_plan` and `log` (a transport's retries) follow a real or sandbox run.  `yes`: start
    the real send of an edition other than today's or yesterday's (see check_fresh).
    `weekly`: the weekly edition of the week to `day` (digest.select.edition_key) instead.
    """
    check_options(mode, retry=retry, refreeze=refreeze, workers=workers, sample=sample, outbox=outbox)
    if mode == "dry-run":
        return _dry_run(settings, day, sample, Path(outbox) if outbox else None, notify, weekly)
    check_ready(settings)
    signer = link_signer(settings, real=True, notify=notify)
    if not settings.base_url:
        notify(f"warning: DIGEST_BASE_URL is not set: the links and List-Unsubscribe headers in these emails "
               f"point at {settings.links_base}, which your subscribers cannot reach")
    engine = open_store(settings.database_url)
    if mode == "send" and not yes:
        check_fresh(engine, settings, day, weekly)
    if mode == "sandbox":
        transport = SendGridTransport(settings, sandbox=True, log=log)
        return sending.rehearse(engine, settings, day, transport, signer, mode="sandbox", progress=progress,
                                weekly=weekly)
    if workers > 1:
        return send_with_workers(engine, settings, day, workers,
                                 partial(SendGridTransport, settings, log=log_to_stderr),
                                 retry=retry, refreeze=refreeze, progress=progress, on_plan=on_plan,
                                 weekly=weekly)
    return sending.send(engine, settings, day, SendGridTransport(settings, log=log), signer,
                        retry=retry, refreeze=refreeze, progress=progress, on_plan=on_plan, weekly=weekly)


def _dry_run(settings: Settings, day: date, sample: int | None, outbox: Path | None,
             notify: Callable[[str], None], weekly: bool = False) -> Summary:
    # The weekly edition's files go apart from the daily ones (an outbox folder is emptied
    # of its earlier run's files): outbox/weekly-<date>/, or DIR/weekly/ with --outbox DIR.
    folder = outbox or Path(settings.outbox) / edition_key(day, weekly)
    if weekly and outbox:
        folder = outbox / "weekly"
    transport = OutboxTransport(folder, settings)
    try:
        transport.prepare()
        engine = open_store(settings.database_url)
        summary = sending.rehearse(engine, settings, day, transport,
                                   link_signer(settings, real=False, notify=notify), sample=sample, weekly=weekly)
    except OSError as e:
        raise ConfigError(f"outbox {folder}: {e.strerror or e}") from None
    summary.outbox = str(folder)
    return summary


# -- test sends -------------------------------------------------------------------------------

def check_test_options(*, dry_run: bool = False, sandbox: bool = False, retry: str | None = None, workers: int = 1,
                       sample: int | None = None, outbox: Path | str | None = None, refreeze: bool = False) -> None:
    """SendOptionsError when `send --test-to` is combined with an option of another mode."""
    given = [name for name, on in (("--dry-run", dry_run), ("--sandbox", sandbox), ("--retry", retry),
                                   ("--workers", workers > 1), ("--sample", sample is not None),
                                   ("--outbox", outbox), ("--refreeze", refreeze)) if on]
    if given:
        raise SendOptionsError(f"--test-to cannot be combined with {', '.join(given)} (a test send is one "
                               "message to the addresses given, outside the day's send)")


def run_test(settings: Settings, day: date, to, *, subscriber: str | None = None, sections=None,
             weekly: bool = False, notify: Callable[[str], None] = _quiet) -> TestSend:
    """`digest send --test-to`: digest.testsend.send_test with the store and signer of a
    send.  The links of a test message lead nowhere, so a throwaway key will do (`notify`
    says so)."""
    return send_test(open_store(settings.database_url), settings, day,
                     link_signer(settings, real=False, notify=notify), to, subscriber=subscriber, sections=sections,
                     weekly=weekly)
