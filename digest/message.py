"""One recipient's complete RFC 5322 message (what the outbox writes as .eml)."""

from __future__ import annotations

from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

from digest.config import Settings
from digest.render import Rendered

# Headers may be 998 characters long (RFC 5322); with the default 78 the email package
# RFC 2047-encodes a long List-Unsubscribe URL, which mailbox providers then ignore.
# Bodies are encoded under the default policy first, so quoted-printable lines keep
# RFC 2045's 76 characters; the message is then serialised with POLICY.
POLICY = policy.SMTP.clone(max_line_length=998)


# RFC 8058 one-click unsubscribe: the same for everyone (sent once per request).
ONE_CLICK = {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def shared_headers(settings: Settings) -> dict[str, str]:
    """The headers every recipient of a send shares: one-click unsubscribe, List-Id
    (RFC 2919) and, if set, Feedback-ID.  Sent once per request, not per recipient."""
    headers = {**ONE_CLICK, "List-Id": settings.list_id_header}
    if settings.feedback_id:
        headers["Feedback-ID"] = settings.feedback_id
    return headers


def list_unsubscribe_headers(unsubscribe_url: str) -> dict[str, str]:
    """RFC 2369 + RFC 8058 one-click unsubscribe."""
    return {"List-Unsubscribe": f"<{unsubscribe_url}>", **ONE_CLICK}


def build_message(rendered: Rendered, to_email: str, to_name: str, headers: dict[str, str],
                  settings: Settings, when: datetime | None = None) -> EmailMessage:
    """A multipart/alternative message: text/plain first, then text/html."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = formataddr((settings.sender_name, settings.from_email))
    msg["To"] = formataddr((to_name, to_email)) if to_name else to_email
    if settings.reply_to:
        msg["Reply-To"] = settings.reply_to
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(when or datetime.now(timezone.utc))
    msg["Message-ID"] = make_msgid(domain=settings.from_email.rsplit("@", 1)[-1])
    for name, value in headers.items():
        msg[name] = value
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    msg.policy = POLICY  # for header folding when written out (bodies are already encoded)
    return msg
