"""The Transport interface the send loop depends on, and the values it passes.

A Batch is one digest's message (tokens unfilled), the values every recipient of it
shares (headers, custom_args), and the recipients who get exactly that content; a
transport returns one Outcome per recipient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from digest.render import Rendered


@dataclass(slots=True)
class Recipient:
    subscriber_id: int
    email: str
    name: str
    substitutions: dict[str, str]  # token -> value (see digest.render.TOKENS)
    headers: dict[str, str]        # written literally: SendGrid never substitutes headers
    custom_args: dict[str, str]
    ledger_id: int | None = None   # None in a dry run


@dataclass
class Batch:
    rendered: Rendered
    recipients: list[Recipient]
    headers: dict[str, str] = field(default_factory=dict)      # the same for every recipient
    custom_args: dict[str, str] = field(default_factory=dict)  # the same for every recipient
    send_at: datetime | None = None  # when it is due in the inbox (UTC, naive); None: now
    batch_id: str | None = None      # the edition's SendGrid batch (digest cancel stops it)


@dataclass(frozen=True)
class Outcome:
    recipient: Recipient
    status: str  # sent | failed | unknown
    message_id: str | None = None
    reason: str | None = None


class FatalTransportError(Exception):
    """Stop the whole run now: nothing more can succeed.

    `exit_code` 2 means a configuration problem (the API key is refused), 1 that the
    provider is unreachable for now (rows stay pending; a rerun continues).
    `done` carries outcomes settled before the stop, which must reach the ledger.
    """

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
        self.done: list[Outcome] = []


class Transport(Protocol):
    def deliver(self, batch: Batch) -> list[Outcome]: ...
