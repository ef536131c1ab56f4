"""One rule for an email address, whoever gives it (a subscriber, an editor): valid
syntax, checked by email-validator without DNS; no SMTPUTF8 (non-ASCII before the @),
which SendGrid does not take; an internationalised domain kept in its ASCII (punycode)
form, which every mail system accepts."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


class AddressError(ValueError):
    """Not an address we can send to; the message says why."""


def normalize(raw: str, what: str = "email") -> str:
    """`raw` as stored (domain lower-cased), or AddressError naming `what` was wrong."""
    raw = (raw or "").strip()
    if not raw:
        raise AddressError(f"{what} is empty")
    try:
        found = validate_email(raw, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as e:
        raise AddressError(f"{raw!r} is not a valid email address: {e}") from None
    return found.ascii_email or found.normalized
