"""Double opt-in sign-up: a pending subscriber, a confirmation email, the confirming click.

What the person filling the form learns never depends on the address's state (no
enumeration): the web page is always the same and the email goes out after it.  Only the
mailbox sees which email it got:

    new or pending address            -> a confirmation link (pending -> active, once)
    active, paused or unsubscribed    -> a note with its preference link (resubscribe there)
    bounced or complained             -> nothing: we never mail those addresses again

The form is unauthenticated, so anyone can type anyone's address: at most one sign-up
email per address per SIGNUP_EMAIL_INTERVAL, an existing subscriber is never changed,
and a name typed into the form greets an unconfirmed address only if it looks like a
name (greeting_name).  The web form adds a honeypot and rate limits (digest.web.signup).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from datetime import timedelta
from pathlib import Path

import jinja2
from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.deliver.outbox import OutboxTransport
from digest.deliver.transport import Batch, FatalTransportError, Recipient, Transport
from digest.render import Rendered
from digest.subscribers import store
from digest.subscribers.store import SUPPRESSED, Subscriber, SubscriberError
from digest.tokens import Signer, manage_links

log = logging.getLogger("uvicorn.error")

SIGNUP_EMAIL_INTERVAL = timedelta(minutes=10)  # per address: a form cannot be used to flood a mailbox
# A name fit to greet an unconfirmed address with: at most four words of letters (any
# script, with the apostrophes and hyphens names have) or initials ("J."), 40 characters
# at most: no links, digits or symbols, so no message can ride in it.
_NAME_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*|[^\W\d_]\.")


def greeting_name(name: str) -> str:
    """`name` if it may greet someone who has not confirmed yet, else ""."""
    words = name.split()
    fits = len(words) <= 4 and len(" ".join(words)) <= 40 and all(_NAME_WORD.fullmatch(w) for w in words)
    return " ".join(words) if fits else ""


def signup_transport(settings: Settings) -> Transport:
    """The transport named by `signup_delivery`, the digests' own: the outbox (every email
    kept in <outbox>/signups/) or SendGrid; SendGrid without an API key is a ConfigError."""
    if settings.signup_delivery != "sendgrid":
        return OutboxTransport(Path(settings.outbox) / "signups", settings, keep=True)
    from digest.deliver.sendgrid import SendGridTransport, check_ready
    check_ready(settings)
    # A person is waiting on the other side: retry briefly, not for minutes.
    quick = dataclasses.replace(settings, sendgrid_max_attempts=min(settings.sendgrid_max_attempts, 2))
    return SendGridTransport(quick, log=log.warning)


class Signup:
    def __init__(self, engine: Engine, settings: Settings, signer: Signer, transport: Transport,
                 templates: jinja2.Environment):
        self.engine = engine
        self.settings = settings
        self.signer = signer
        self.transport = transport
        self.templates = templates

    def request(self, email: str, name: str, sections: tuple[str, ...]) -> None:
        """Record the sign-up (new addresses only) and, if allowed, email the address.

        `email`, `name` and `sections` are already validated by the form.  An existing
        subscriber is left exactly as they are: the form is not authenticated.
        """
        subscriber, created = store.get(self.engine, email=email), False
        if subscriber is None:
            try:
                subscriber, created = store.add(self.engine, email, name, sections, status="pending"), True
            except SubscriberError:  # the same address was added a moment ago
                subscriber = store.get(self.engine, email=email)
        if subscriber is None or subscriber.status in SUPPRESSED:
            return  # erased meanwhile, or a dead / complaining mailbox: never mail it
        # A new row was just stamped by its insert; any other needs an idle interval.
        if not created and not store.claim_signup_email(self.engine, subscriber.id, SIGNUP_EMAIL_INTERVAL):
            log.info("sign-up email for subscriber %d skipped: one was sent less than %d minutes ago",
                     subscriber.id, SIGNUP_EMAIL_INTERVAL.seconds // 60)
            return
        if subscriber.status == "pending":
            link = f"{self.settings.links_base}/confirm/{self.signer.confirm_token(subscriber.id, subscriber.email)}"
            # The stored name of a pending row was typed by whoever filled the form: it greets
            # only when it looks like a name (no links, digits or symbols), so the form
            # cannot put a message into a stranger's inbox; the To: header never has it.
            greeted = dataclasses.replace(subscriber, name=greeting_name(subscriber.name))
            self._send(dataclasses.replace(subscriber, name=""), self._email(greeted, "confirm", link))
        else:  # active, paused, unsubscribed: the name is the one they confirmed or set themselves
            link, _ = manage_links(self.signer, self.settings.links_base, subscriber.id, subscriber.email)
            kind = "left" if subscriber.status == "unsubscribed" else "already"
            self._send(subscriber, self._email(subscriber, kind, link))

    def _send(self, subscriber: Subscriber, rendered: Rendered) -> None:
        """One email, as a batch of one recipient; RuntimeError if it did not go out."""
        recipient = Recipient(subscriber_id=subscriber.id, email=subscriber.email, name=subscriber.name,
                              substitutions={}, headers={},
                              custom_args={"kind": "signup", "subscriber_id": str(subscriber.id)})
        try:
            outcome = self.transport.deliver(Batch(rendered, [recipient]))[0]
        except FatalTransportError as e:
            raise RuntimeError(str(e)) from None
        if outcome.status != "sent":
            raise RuntimeError(f"sign-up email to subscriber {subscriber.id} {outcome.status}: {outcome.reason}")

    def confirm(self, subscriber: Subscriber) -> Subscriber | None:
        """Activate a pending subscriber; None if they are not pending (used link, or they left since)."""
        return store.activate_pending(self.engine, subscriber.id, subscriber.email)

    def _email(self, subscriber: Subscriber, kind: str, link: str) -> Rendered:
        """kind: confirm (a pending sign-up), already (gets the digest), left (unsubscribed earlier)."""
        s = self.settings
        subject, preheader = {
            "confirm": (f"Confirm your subscription to {s.name}", "One click and your first digest is on its way."),
            "already": (f"You already get {s.name}", "Your link to change sections or pause."),
            "left": (f"Your {s.name} settings", "You unsubscribed earlier: here is how to come back."),
        }[kind]
        ctx = {"newsletter": s.name, "lang": s.lang, "site_url": s.site_url, "name": subscriber.name,
               "kind": kind, "link": link, "subject": subject, "preheader": preheader}
        return Rendered(subject=subject, preheader=preheader,
                        html=self.templates.get_template("confirm_email.html.j2").render(ctx),
                        text=self.templates.get_template("confirm_email.txt.j2").render(ctx))
