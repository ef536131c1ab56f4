"""Test sends: the real message of one digest, to editors' addresses only, marked [TEST].

The message is the one the send would build for that digest (the edition rendered once,
the digest assembled, digest.message's headers), and exactly what `digest preview`
shows, but for the subject, which starts with `[TEST] `.  It goes through the transport
a send would use: SendGrid when SENDGRID_API_KEY is set, else the outbox
(`<outbox>/tests/`, every file kept).  It writes no ledger row and freezes nothing, so it
works before, during and after the day's send.

Its links must not act on anyone: a test of reader X's digest carries X's name and
sections but the links of subscriber id 0, who is nobody (as `preview` of sections
does), so an editor clicking "Unsubscribe" in it unsubscribes no one.

Who may get one: the editors (the `editors` table) and `[editors] test_recipients` in
digest.toml; any other address is refused, by name, before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from sqlalchemy.engine import Engine

from digest import editors
from digest.config import Settings
from digest.deliver.outbox import OutboxTransport
from digest.deliver.sendgrid import SendGridTransport
from digest.deliver.transport import Batch, FatalTransportError, Recipient, Transport
from digest.preview import ALL, NOBODY_EMAIL, NOBODY_ID, PreviewError, prepare
from digest.tokens import Signer

SUBJECT_PREFIX = "[TEST] "
OUTBOX_FOLDER = "tests"  # under `outbox`: beside the dry runs' <date>/ folders, never replacing them


class TestSendError(Exception):
    """Nothing was sent: an address not allowed, nothing to send, a transport that cannot work."""

    __test__ = False  # not a pytest class

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class TestSend:
    """What a test send did."""

    __test__ = False

    date: str
    subject: str
    recipients: list[str]
    message_ids: list[str | None]
    via: str                    # "sendgrid" | "outbox"
    outbox: str | None = None   # the folder, for the outbox
    problems: list[dict] = field(default_factory=list)  # {"email", "status", "reason"}: not sent
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def allowed_test_recipients(engine: Engine, settings: Settings) -> set[str]:
    """The addresses test sends may go to, lower-cased: every editor's, and `[editors] test_recipients`."""
    return {e.email.strip().lower() for e in editors.list_all(engine)} | set(settings.test_recipients)


def checked_recipients(engine: Engine, settings: Settings, to) -> list[str]:
    """`to` without blanks and repeats; TestSendError naming every address not allowed."""
    addresses = list(dict.fromkeys(a.strip() for a in to if a and a.strip()))
    if not addresses:
        raise TestSendError("no address to send the test to", 2)
    allowed = allowed_test_recipients(engine, settings)
    refused = [a for a in addresses if a.lower() not in allowed]
    if refused:
        raise TestSendError(f"not allowed to get test sends: {', '.join(refused)} (test sends go only to the "
                            "editors' addresses and to [editors] test_recipients in digest.toml)", 2)
    return addresses


def transport_for(settings: Settings) -> tuple[Transport, str, Path | None]:
    """The transport a send would use: SendGrid with an API key, else the outbox."""
    if settings.sendgrid_api_key:
        return SendGridTransport(settings), "sendgrid", None
    folder = Path(settings.outbox) / OUTBOX_FOLDER
    return OutboxTransport(folder, settings, keep=True), "outbox", folder


def send_test(engine: Engine, settings: Settings, day: date, signer: Signer, to, *, subscriber: str | None = None,
              sections=None, transport: Transport | None = None, weekly: bool = False) -> TestSend:
    """Send the digest of `subscriber` (their name and sections), or of `sections` (ALL, or
    none given: the whole edition), of the edition of `day` to the addresses `to`.

    TestSendError when nothing was sent (its exit_code: 2 for a refused address or a
    transport that cannot work, 1 when there is no such digest or SendGrid is unreachable).
    """
    addresses = checked_recipients(engine, settings, to)
    if subscriber and sections:
        raise TestSendError("a test send is of one subscriber's digest or of sections, not both", 2)
    try:
        shown = prepare(engine, settings, day, signer, subscriber=subscriber,
                        sections=None if subscriber else (sections or ALL), weekly=weekly)
    except PreviewError as e:
        raise TestSendError(str(e)) from None
    # The name and sections are the subscriber's; the token is nobody's (id 0).
    nobody = shown.planner.recipient(NOBODY_ID, NOBODY_EMAIL, shown.name)
    rendered = replace(shown.rendered, subject=SUBJECT_PREFIX + shown.rendered.subject)
    batch = Batch(rendered, [Recipient(NOBODY_ID, a, "", nobody.substitutions, nobody.headers, {}) for a in addresses],
                  dict(shown.planner.headers), {"test_send": day.isoformat()})
    via, folder = "given", None
    if transport is None:
        transport, via, folder = transport_for(settings)
    try:
        outcomes = transport.deliver(batch)
    except FatalTransportError as e:
        raise TestSendError(str(e), e.exit_code) from None
    except OSError as e:  # the outbox folder cannot be written
        raise TestSendError(f"outbox {folder}: {e.strerror or e}", 2) from None
    return TestSend(date=day.isoformat(), subject=rendered.subject,
                    recipients=[o.recipient.email for o in outcomes if o.status == "sent"],
                    message_ids=[o.message_id for o in outcomes if o.status == "sent"], via=via,
                    outbox=str(folder) if folder else None,
                    problems=[{"email": o.recipient.email, "status": o.status, "reason": o.reason or ""}
                              for o in outcomes if o.status != "sent"],
                    notes=shown.notes)
