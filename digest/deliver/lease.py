"""Leases: how several senders share one edition and still send nobody twice.

A sender claims rows for itself: their `claim` is its name (host:pid:id) and their
`lease_until` a couple of minutes ahead.  A thread of its own renews the lease while the
process lives, however long a request takes.  A sender that dies stops renewing; once
its lease runs out its claimed rows are plain `unknown` rows (reported, never resent by
themselves), and `send --retry unknown` may take them.  While a lease is live, nothing
but its sender touches those rows.

On one host a dead sender need not be waited for: `os.kill(pid, 0)` says its process is
gone, and its lease is ended at once (see `end_dead_leases`).
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from digest.deliver import ledger
from digest.store import utcnow

# Longer than any pause of a live sender's renewing thread (a busy database, a stalled
# machine); a request itself may take longer, since the lease is renewed meanwhile.
LENGTH = timedelta(minutes=2)
RENEW_EVERY = 20.0  # seconds


def _host() -> str:
    return socket.gethostname()[:20]  # a sender's name fits the ledger's claim column (40)


def sender_name() -> str:
    """host:pid:id: the host and pid say where the sender runs; the id tells runs apart."""
    return f"{_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def process_gone(sender: str) -> bool:
    """Is `sender` a process of this host that no longer exists?  (Elsewhere: unknowable.)"""
    host, _, rest = sender.partition(":")
    pid = rest.partition(":")[0]
    if host != _host() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, as another user
    return False


def end_dead_leases(engine: Engine, day: str) -> int:
    """End the leases of this host's senders whose process is gone; how many rows."""
    return sum(ledger.end_lease(engine, day, s) for s, _, _ in ledger.in_flight(engine, day) if process_gone(s))


def report(engine: Engine, day: str) -> dict:
    """`digest status`: the ledger's report once this host's dead senders' leases are
    ended, so rows a killed run left behind show as the unknown rows they are."""
    end_dead_leases(engine, day)
    return ledger.report(engine, day)


class Lease:
    """One sender's lease on the rows it claims; `with Lease(...)` renews it on a thread.

    `valid()` is False once a renewal has failed for longer than the lease lasts (the
    database unreachable): the sender must then send nothing more, since its rows may
    already count as unknown for everyone else.
    """

    def __init__(self, engine: Engine, day: str, name: str | None = None,
                 length: timedelta = LENGTH, every: float = RENEW_EVERY):
        self.engine, self.day, self.length, self.every = engine, day, length, every
        self.name = name or sender_name()
        self.until: datetime = utcnow() + length
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def valid(self) -> bool:
        return utcnow() < self.until - timedelta(seconds=self.every)

    def renew(self) -> None:
        until = utcnow() + self.length
        ledger.renew_lease(self.engine, self.day, self.name, until)
        self.until = until

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.renew()
            except Exception:  # noqa: BLE001 - tried again next time; valid() turns False meanwhile
                pass

    def __enter__(self) -> Lease:
        self.until = utcnow() + self.length
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
