"""`digest cancel`: stop (or pause, or resume) the scheduled sends of an edition at SendGrid.

Every request of an edition carries its SendGrid batch id (editions.batch_id), so one
call stops all of it: POST /v3/user/scheduled_sends {batch_id, status: cancel|pause}
(PATCH when the batch is paused or cancelled already), and DELETE to resume.  SendGrid
stops a scheduled send only until 10 minutes before it is due, so the ledger changes
only rows due later than that: on a cancel they become `cancelled` (pending ones too, so
no later run sends them); rows due sooner stay as they are, SendGrid delivers them.
SendGrid is asked first: when it refuses, the ledger is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from digest.config import ConfigError, Settings
from digest.deliver import ledger
from digest.deliver.sendgrid import SendGridTransport, check_ready
from digest.select import edition_key
from digest.store import open_store

ACTIONS = ("cancel", "pause", "resume")


class CancelRefused(Exception):
    """Nothing to cancel, or too late: SendGrid was not asked and nothing changed."""


@dataclass(frozen=True)
class Cancelled:
    date: str
    action: str
    batch_id: str
    cancelled: int = 0  # ledger rows now `cancelled`
    stopped: int = 0    # rows SendGrid now holds back (scheduled, due more than 10 minutes ahead)
    too_soon: int = 0   # scheduled rows due within 10 minutes: SendGrid delivers them

    def line(self) -> str:
        if self.action == "resume":
            return f"resumed the scheduled sends of {self.date}: SendGrid delivers them when they are due"
        done = (f"cancelled the scheduled sends of {self.date}: {self.cancelled} recipient(s) not yet due will "
                "not get it" if self.action == "cancel" else
                f"paused the scheduled sends of {self.date}: {self.stopped} recipient(s) not yet due are held "
                f"(`digest cancel --date {self.date} --resume` sends them; SendGrid discards them 72 hours after "
                "they were due)")
        return done + (f"; {self.too_soon} due within 10 minutes still get it" if self.too_soon else "")


def run_editions(settings: Settings, day: date, action: str = "cancel") -> list[Cancelled]:
    """`digest cancel --date D`: the daily edition of D and, when it has a SendGrid batch,
    the weekly edition of the week to D.  CancelRefused only when neither could be done
    (the daily edition's reason, or the weekly one's when only that one had a batch)."""
    done, refused = [], []
    for weekly in (False, True):
        if weekly and not ledger.batch_of(open_store(settings.database_url), edition_key(day, True)):
            break
        try:
            done.append(run(settings, day, action, weekly=weekly))
        except CancelRefused as e:
            refused.append(e)
    if not done:
        raise refused[-1]
    return done


def run(settings: Settings, day: date, action: str = "cancel", weekly: bool = False) -> Cancelled:
    """Cancel, pause or resume the edition's scheduled sends (`weekly`: the weekly edition's);
    CancelRefused when there is nothing to do, FatalTransportError when SendGrid refuses or
    cannot be reached."""
    if action not in ACTIONS:
        raise ConfigError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
    check_ready(settings)
    engine = open_store(settings.database_url)
    the_day = edition_key(day, weekly)
    batch_id = ledger.batch_of(engine, the_day)
    if not batch_id:
        raise CancelRefused(f"the edition of {the_day} has no SendGrid batch: its real send has not started, so "
                            "nothing of it is scheduled")
    sendgrid = SendGridTransport(settings)
    held = sendgrid.batch_status(batch_id)
    if action == "resume":
        if held is None:
            raise CancelRefused(f"the scheduled sends of {the_day} are not paused: nothing to resume")
        if held == "cancel":
            raise CancelRefused(f"the scheduled sends of {the_day} were cancelled: a cancel cannot be resumed")
        sendgrid.resume_batch(batch_id)
        return Cancelled(the_day, action, batch_id)
    if held == "cancel":
        raise CancelRefused(f"the scheduled sends of {the_day} are cancelled already")
    stoppable, waiting = ledger.cancellable(engine, the_day)
    if not stoppable and not waiting:
        due = ledger.next_due(engine, the_day)
        raise CancelRefused(f"too late to {action} the edition of {the_day}: SendGrid stops a scheduled send only "
                            "until 10 minutes before it is due, and no recipient is due later than that"
                            + (f" (the next is due {due:%Y-%m-%d %H:%M} UTC)" if due else ""))
    too_soon = ledger.scheduled(engine, the_day) - stoppable
    sendgrid.stop_batch(batch_id, action)
    cancelled = ledger.cancel(engine, the_day) if action == "cancel" else 0
    return Cancelled(the_day, action, batch_id, cancelled, stoppable, too_soon)
