"""The web app's security: CSRF values, the Origin check, the manage link as a session,
response headers, bounded form parsing, and link tokens kept out of the logs."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from urllib.parse import urlsplit

from itsdangerous import BadData, TimestampSigner
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

from digest.subscribers import store
from digest.subscribers.store import Subscriber
from digest.tokens import Signer, TokenError

SIGNUP_FORM_MAX_AGE = 24 * 3600
SAFE_METHODS = ("GET", "HEAD")  # Starlette routes HEAD to GET's handler: it must not change anything either
# Our forms are a few short text fields; these bound what a post may make the parser hold.
FORM_LIMITS = {"max_files": 0, "max_fields": 100, "max_part_size": 64 * 1024}

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    # Tokens are in our URLs: never send them to other sites, but keep Origin on our own posts.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",  # pages show someone's settings
}

# A page with our own script file (the preference page's time-zone suggestion): scripts from
# this site only; nothing inline, so an injected <script> or onclick= still does not run.
SCRIPT_HEADERS = {**HEADERS, "Content-Security-Policy": CSP.replace("default-src 'none';",
                                                                    "default-src 'none'; script-src 'self';")}


class FormGuard:
    """Refuses cross-site form posts.

    Two independent checks: a browser's `Origin` header, when sent, must be this site; and
    every form carries a hidden `csrf` value another site cannot compute.  For the forms
    of one subscriber that value is an HMAC of their link token (which only they have);
    the sign-up form, which has no secret to protect (double opt-in guards it), gets a
    signed timestamp so a post must come from a recently served form.
    """

    def __init__(self, secret_key: str, base_url: str):
        self._key = hashlib.sha256(b"news-digest.csrf|" + secret_key.encode()).digest()
        self._signup = TimestampSigner(secret_key, salt="news-digest.signup-form")
        self._origin = origin_of(base_url) if base_url else None

    def for_token(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, token: str, value: object) -> bool:
        return isinstance(value, str) and hmac.compare_digest(self.for_token(token), value)

    def for_signup(self) -> str:
        return self._signup.sign(b"subscribe").decode()

    def signup_ok(self, value: object) -> bool:
        try:
            return isinstance(value, str) and self._signup.unsign(value, max_age=SIGNUP_FORM_MAX_AGE) == b"subscribe"
        except BadData:
            return False

    def same_origin(self, request: Request) -> bool:
        """A sent `Origin` must be DIGEST_BASE_URL's scheme, host and port.

        Why not the request's Host header: a client picks that header, so matching it
        proves nothing.  Only without a base URL (trying things out locally) is the
        request's own URL all there is to compare with.
        """
        origin = request.headers.get("origin")
        if origin is None:  # older browsers and non-browser clients: the csrf value decides
            return True
        expected = self._origin or origin_of(str(request.base_url))
        return expected is not None and origin_of(origin) == expected

    def check_form(self, request: Request, form: FormData, token: str) -> None:
        """A post of one subscriber's form: from this site, with the value for their token; else 403."""
        if not (self.same_origin(request) and self.token_ok(token, form.get("csrf"))):
            raise HTTPException(403)

    def check_signup_form(self, request: Request, form: FormData) -> None:
        """A post of the sign-up form: from this site, of a recently served form; else 403."""
        if not (self.same_origin(request) and self.signup_ok(form.get("csrf"))):
            raise HTTPException(403)


async def subscriber_from(request: Request, signer: Signer, engine: Engine) -> tuple[Subscriber, str]:
    """The subscriber a manage link names (the link is the session), or a 404 that reads
    the same for every bad link."""
    token = request.path_params["token"]
    try:
        subscriber_id, tag = signer.read_manage_token(token)
    except TokenError:
        raise HTTPException(404) from None
    subscriber = await run_in_threadpool(store.get, engine, id=subscriber_id)
    # Erased since the email was sent, or the id now belongs to someone else (a
    # restore into a new database): the link must not reach them.
    if subscriber is None or not signer.belongs_to(tag, subscriber.email):
        raise HTTPException(404)
    return subscriber, token


async def read_form(request: Request) -> FormData:
    """The posted fields, all text; a 400 page for anything else.

    Our forms have no file inputs: a file part is refused while parsing (max_files=0
    makes Starlette answer 400), and any value that is still not a str is refused here
    rather than reaching code that expects text.
    """
    form = await request.form(**FORM_LIMITS)
    if not all(isinstance(value, str) for _, value in form.multi_items()):
        raise HTTPException(400)
    return form


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL, default ports filled in; None for "null" or junk."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:  # a port that is not a number
        return None
    if not (parts.scheme and parts.hostname and port):
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


_TOKEN_PATH = re.compile(r"/(preferences|unsubscribe|confirm)/[^/\s?\"]+")


_TOKEN_QUERY = re.compile(r"([?&]t=)[^&\s\"]+")  # the web version's ?t=


def redact(text: str) -> str:
    return _TOKEN_QUERY.sub(r"\1…", _TOKEN_PATH.sub(r"/\1/…", text))


class RedactTokens(logging.Filter):
    """Keeps link tokens (each one a key to someone's settings) out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True
