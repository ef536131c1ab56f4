"""Where batches are built and delivered: a few threads, one request in flight each.

The send loop claims rows and records outcomes (the ledger has one writer, the loop's
thread); a job is one digest's section mask and up to 1000 people (subscriber_id,
email, name, ledger_id).  A worker thread builds their recipients (one signed token
each), hands the batch to the transport and returns a `Settled`: the outcomes grouped
the way the ledger records them, so recording a batch is one statement per outcome.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from digest.deliver.transport import Batch, FatalTransportError, Outcome, Recipient, Transport
from digest.message import ONE_CLICK
from digest.render import TOKENS, Rendered, RenderError
from digest.tokens import Signer

NAME_HTML, NAME_TEXT, TOKEN = TOKENS["name_html"], TOKENS["name_text"], TOKENS["token"]
_NEEDS_ESCAPE = re.compile("[&<>\"']")
MAX_PROBLEMS = 1000  # failed/unknown recipients listed per run; `digest status` lists them all


class Builder:
    """Recipients for people: the only per-recipient work of a send."""

    def __init__(self, signer: Signer, links_base: str, edition: str, headers: dict[str, str] | None = None):
        self.signer = signer
        self.base = links_base.rstrip("/")
        # What every recipient shares goes once per request, not once per personalization
        # (digest.message.shared_headers: one-click, List-Id, Feedback-ID).
        self.headers = dict(ONE_CLICK if headers is None else headers)
        self.custom_args = {"edition": edition}

    def recipient(self, subscriber_id: int, email: str, name: str, ledger_id: int | None = None) -> Recipient:
        """One signed token, the name, the unsubscribe header.

        Run a million times a morning, so written out: digest.render.Personal is the same
        rule (tests check they agree).
        """
        token = self.signer.manage_token(subscriber_id, email)
        greeting = ", " + name if name else ""
        return Recipient(subscriber_id, email, name,
                         {NAME_HTML: html.escape(greeting) if _NEEDS_ESCAPE.search(greeting) else greeting,
                          NAME_TEXT: greeting, TOKEN: token},
                         {"List-Unsubscribe": f"<{self.base}/unsubscribe/{token}>"},
                         {"subscriber_id": str(subscriber_id)}, ledger_id)

    def batch(self, rendered: Rendered, people) -> Batch:
        """`people`: (subscriber_id, email, name, ledger_id) sharing one digest, at most 1000."""
        recipient = self.recipient
        return Batch(rendered, [recipient(sid, email, name, lid) for sid, email, name, lid in people],
                     self.headers, self.custom_args)


@dataclass
class Settled:
    """One batch's outcomes, as the ledger records them and the summary counts them."""
    groups: dict = field(default_factory=dict)   # (status, message_id, reason) -> [ledger ids]
    problems: list = field(default_factory=list)  # {"email", "status", "reason"}: failed or unknown
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    unsent: list = field(default_factory=list)    # ledger ids certainly never sent: back to pending
    fatal: str | None = None
    fatal_code: int = 2

    @classmethod
    def of(cls, outcomes, **kw) -> Settled:
        settled = cls(**kw)
        groups: dict[tuple, list] = defaultdict(list)
        for o in outcomes:
            groups[(o.status, o.message_id, (o.reason or "")[:2000] or None)].append(o.recipient.ledger_id)
            if o.status == "sent":
                settled.sent += 1
                continue
            if o.status == "failed":
                settled.failed += 1
            else:
                settled.unknown += 1
            if len(settled.problems) < MAX_PROBLEMS:
                settled.problems.append({"email": o.recipient.email, "status": o.status, "reason": o.reason or ""})
        settled.groups = dict(groups)
        return settled

    @classmethod
    def failing(cls, people, reason: str) -> Settled:
        """No request was made (the digest cannot be rendered): every one of them failed."""
        return cls.of([Outcome(Recipient(sid, email, name, {}, {}, {}, lid), "failed", reason=reason)
                       for sid, email, name, lid in people])

    @property
    def count(self) -> int:
        return self.sent + self.failed + self.unknown


LEASE_LOST = ("this sender could not renew its lease (the database was unreachable for too long), so it "
              "stopped: its rows in flight count as unknown")


def deliver(planner, transport: Transport, mask: int, people, batch: Batch | None = None,
            may_send: Callable[[], bool] | None = None, send_at=None) -> Settled:
    """Build (unless given) and deliver one batch of the digest of `mask`; never raises.

    `planner` is digest.sending.Planner: the edition's rendered parts and a Builder.
    A digest that cannot be rendered fails its people without a request.  `may_send`
    (the sender's lease is valid) is asked just before the request leaves.
    """
    if batch is None:
        try:
            batch = planner.batch(mask, people, send_at)
        except RenderError as e:
            return Settled.failing(people, str(e))
    if may_send is not None and not may_send():
        return Settled(unsent=[r.ledger_id for r in batch.recipients], fatal=LEASE_LOST, fatal_code=1)
    try:
        return Settled.of(transport.deliver(batch))
    except FatalTransportError as e:
        finished = {id(o.recipient) for o in e.done}
        return Settled.of(e.done, unsent=[r.ledger_id for r in batch.recipients if id(r) not in finished],
                          fatal=str(e), fatal_code=e.exit_code)
    except Exception as e:  # noqa: BLE001 - a bug, not SendGrid: the request may have left
        why = f"the sender failed mid-request ({type(e).__name__}: {e}); the request may have left"
        return Settled.of([Outcome(r, "unknown", reason=why) for r in batch.recipients],
                          fatal=f"internal error: {type(e).__name__}: {e}")


class Pool:
    """Runs `deliver` jobs on `size` threads: that many requests in flight at once."""

    def __init__(self, planner, transport: Transport, size: int, may_send: Callable[[], bool] | None = None):
        self.planner, self.transport, self.size, self.may_send = planner, transport, size, may_send
        planner.rendering.parts()  # the edition's one pipeline run, before any thread needs it
        self._threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="deliver")

    def submit(self, mask: int, people, batch: Batch | None = None, send_at=None) -> Future:
        return self._threads.submit(deliver, self.planner, self.transport, mask, people, batch, self.may_send,
                                    send_at)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        self._threads.shutdown(wait=True)
