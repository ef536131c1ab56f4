"""Signed tokens for the links in every email.

A token names a subscriber by database id (never the address) and is signed with
DIGEST_SECRET_KEY (HMAC via itsdangerous).  Manage tokens do not expire, so links in old
emails keep working; confirmation tokens for double opt-in expire after a week.
"""

from __future__ import annotations

import secrets

from itsdangerous import BadData, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

CONFIRM_MAX_AGE = 7 * 24 * 3600


class TokenError(ValueError):
    """The token is tampered with, truncated, signed with another key, or expired."""


class Signer:
    def __init__(self, secret_key: str):
        if not secret_key:
            raise ValueError("a secret key is required")
        self._manage = URLSafeSerializer(secret_key, salt="news-digest.manage")
        self._confirm = URLSafeTimedSerializer(secret_key, salt="news-digest.confirm")

    def manage_token(self, subscriber_id: int) -> str:
        return self._manage.dumps(subscriber_id)

    def read_manage_token(self, token: str) -> int:
        return self._read(self._manage.loads, token)

    def confirm_token(self, subscriber_id: int) -> str:
        return self._confirm.dumps(subscriber_id)

    def read_confirm_token(self, token: str) -> int:
        try:
            return self._read(lambda t: self._confirm.loads(t, max_age=CONFIRM_MAX_AGE), token)
        except SignatureExpired:
            raise TokenError("this confirmation link has expired") from None

    @staticmethod
    def _read(loads, token: str) -> int:
        try:
            value = loads(token)
        except SignatureExpired:
            raise
        except (BadData, ValueError, TypeError, UnicodeError):
            raise TokenError("invalid link") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise TokenError("invalid link")
        return value


def throwaway_key() -> str:
    """A random key for dry runs, so links are well-formed but cannot be forged or reused."""
    return secrets.token_urlsafe(32)


def manage_links(signer: Signer, base_url: str, subscriber_id: int) -> tuple[str, str]:
    """(preferences URL, unsubscribe URL) for one subscriber, under DIGEST_BASE_URL."""
    token = signer.manage_token(subscriber_id)
    base = base_url.rstrip("/")
    return f"{base}/preferences/{token}", f"{base}/unsubscribe/{token}"
