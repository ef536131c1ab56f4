"""The Transport interface the send loop depends on, and the values it passes.

A Batch is one digest's message (tokens unfilled) and the recipients who get exactly
that content; a transport returns one Outcome per recipient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from digest.render import Rendered


@dataclass(frozen=True)
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
    key: tuple = ()


@dataclass(frozen=True)
class Outcome:
    recipient: Recipient
    status: str  # sent | failed | unknown
    message_id: str | None = None
    reason: str | None = None


class FatalTransportError(Exception):
    """Stop the whole run now (e.g. the API key is refused): nothing more can succeed."""


class Transport(Protocol):
    name: str

    def deliver(self, batch: Batch) -> list[Outcome]: ...
