"""Double opt-in sign-up: a pending subscriber, a confirmation email, the confirming click.

What the person filling the form learns never depends on the address's state (no
enumeration): a new or pending address gets a confirmation link, an address that already
gets the digest gets a "you're already subscribed" note with its preference link, and an
address that left gets a confirmation link to come back.  Only the mailbox sees which.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timezone
from pathlib import Path

import jinja2
from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.deliver.outbox import safe_name
from digest.deliver.transport import Batch, FatalTransportError, Recipient
from digest.message import build_message
from digest.render import Rendered
from subscribers import store
from subscribers.store import Subscriber, SubscriberError
from subscribers.tokens import Signer, manage_links

log = logging.getLogger("uvicorn.error")

RECEIVING = ("active", "paused")  # already subscribed: confirming again changes nothing


class OutboxMailer:
    """Writes each sign-up email to <outbox>/signups/ as an .eml file (dry-run setups)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.folder = Path(settings.outbox) / "signups"

    def send(self, subscriber: Subscriber, rendered: Rendered) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        msg = build_message(rendered, subscriber.email, subscriber.name, {}, self.settings)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        (self.folder / f"{stamp}-{safe_name(subscriber.email)}.eml").write_bytes(msg.as_bytes())


class SendGridMailer:
    """Sends each sign-up email through SendGrid, as one single-recipient batch."""

    def __init__(self, settings: Settings):
        from digest.deliver.sendgrid import SendGridTransport, check_ready
        check_ready(settings)
        # A person is waiting on the other side: retry briefly, not for minutes.
        quick = dataclasses.replace(settings, sendgrid_max_attempts=min(settings.sendgrid_max_attempts, 2))
        self.transport = SendGridTransport(quick, log=log.warning)

    def send(self, subscriber: Subscriber, rendered: Rendered) -> None:
        recipient = Recipient(subscriber_id=subscriber.id, email=subscriber.email, name=subscriber.name,
                              substitutions={}, headers={},
                              custom_args={"kind": "signup", "subscriber_id": str(subscriber.id)})
        try:
            outcome = self.transport.deliver(Batch(rendered, [recipient]))[0]
        except FatalTransportError as e:
            raise RuntimeError(str(e)) from None
        if outcome.status != "sent":
            raise RuntimeError(f"sign-up email to subscriber {subscriber.id} {outcome.status}: {outcome.reason}")


def make_mailer(settings: Settings):
    """The transport named by `signup_delivery`; SendGrid without an API key is a ConfigError."""
    return SendGridMailer(settings) if settings.signup_delivery == "sendgrid" else OutboxMailer(settings)


class Signup:
    def __init__(self, engine: Engine, settings: Settings, signer: Signer, mailer, templates: jinja2.Environment):
        self.engine = engine
        self.settings = settings
        self.signer = signer
        self.mailer = mailer
        self.templates = templates

    def request(self, email: str, name: str, sections: tuple[str, ...]) -> None:
        """Record the sign-up (new addresses only) and email the address.

        `email`, `name` and `sections` are already validated by the form.  An existing
        subscriber is left exactly as they are: the form is not authenticated.
        """
        subscriber = store.get(self.engine, email=email)
        if subscriber is None:
            try:
                subscriber = store.add(self.engine, email, name, sections, status="pending")
            except SubscriberError:  # the same address was added a moment ago
                subscriber = store.get(self.engine, email=email)
        if subscriber.status in RECEIVING:
            link, _ = manage_links(self.signer, self.settings.links_base, subscriber.id)
            self.mailer.send(subscriber, self._email(subscriber, already=True, link=link))
        else:
            link = f"{self.settings.links_base}/confirm/{self.signer.confirm_token(subscriber.id)}"
            self.mailer.send(subscriber, self._email(subscriber, already=False, link=link))

    def confirm(self, token: str) -> Subscriber:
        """Activate the subscriber a confirmation link names; TokenError or LookupError if none."""
        subscriber = store.get(self.engine, id=self.signer.read_confirm_token(token))
        if subscriber is None:
            raise LookupError("no such subscriber")
        if subscriber.status in RECEIVING:
            return subscriber
        return store.set_status(self.engine, subscriber.id, "active", None)

    def _email(self, subscriber: Subscriber, already: bool, link: str) -> Rendered:
        s = self.settings
        subject = f"You already get {s.name}" if already else f"Confirm your subscription to {s.name}"
        preheader = "Your link to change sections or pause." if already else "One click and your first digest is on its way."
        ctx = {"newsletter": s.name, "lang": s.lang, "site_url": s.site_url, "name": subscriber.name,
               "already": already, "link": link, "subject": subject, "preheader": preheader}
        return Rendered(subject=subject, preheader=preheader,
                        html=self.templates.get_template("confirm_email.html.j2").render(ctx),
                        text=self.templates.get_template("confirm_email.txt.j2").render(ctx))
