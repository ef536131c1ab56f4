"""The subscriber-facing web app: preference centre, unsubscribe, sign-up, SendGrid webhook.

Routes live under the path of DIGEST_BASE_URL (https://news.example.com/digest ->
/digest/preferences/...), so the links in emails work without a rewriting proxy.  Pages
work without JavaScript; every failure is a friendly page, never a traceback.

Handlers are thin: read the request, call the store (in a worker thread: SQLite may wait
on the sender's lock), render a page.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from contextlib import asynccontextmanager
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import jinja2
from itsdangerous import BadData, TimestampSigner
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from digest.config import ConfigError, Settings
from digest.render import TEMPLATES_DIR, section_title
from digest.store import BUSY_MESSAGE, StoreError, is_busy, open_store
from subscribers import store
from subscribers.signup import Signup, make_mailer
from subscribers.store import Subscriber, SubscriberError, normalize_email
from subscribers.tokens import Signer, TokenError
from subscribers.webhook import MalformedEvents, Verifier, apply_events, parse_events

log = logging.getLogger("uvicorn.error")

WEB_TEMPLATES = TEMPLATES_DIR / "web"
SIGNUP_FORM_MAX_AGE = 24 * 3600
RECEIVING = ("active", "paused")
SAFE_METHODS = ("GET", "HEAD")  # Starlette routes HEAD to GET's handler: it must not change anything either
MAX_WEBHOOK_BODY = 5 * 1024 * 1024  # SendGrid batches stay far below this; anything larger is refused unread
# Our forms are a few short text fields; these bound what a post may make the parser hold.
FORM_LIMITS = {"max_files": 0, "max_fields": 100, "max_part_size": 64 * 1024}

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    # Tokens are in our URLs: never send them to other sites, but keep Origin on our own posts.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",  # pages show someone's settings
}

# What each failure page says; a bad token and an unknown page read the same, revealing nothing.
ERRORS = {
    400: ("That did not work", "The request could not be understood. Go back and try again."),
    413: ("That did not work", "The request was too large."),
    403: ("Please try again", "This form was out of date or sent from another site, so nothing was changed. "
                              "Go back, reload the page and send it again."),
    404: ("This link does not work", "It may be incomplete: links in emails sometimes get cut in two. "
                                     "Use the link at the bottom of your latest digest."),
    405: ("That did not work", "This page cannot be used that way."),
    500: ("Something went wrong on our side", "Please try again in a few minutes."),
    503: ("Busy for a moment", "Nothing was changed. Please try again in a minute."),
}


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

    def token_ok(self, token: str, value) -> bool:
        return isinstance(value, str) and hmac.compare_digest(self.for_token(token), value)

    def for_signup(self) -> str:
        return self._signup.sign(b"subscribe").decode()

    def signup_ok(self, value) -> bool:
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


class Site:
    """The app's state and its request handlers."""

    def __init__(self, settings: Settings, engine):
        self.settings = settings
        self.engine = engine
        self.root = urlsplit(settings.base_url).path.rstrip("/")
        self.signer = Signer(settings.secret_key)
        self.guard = FormGuard(settings.secret_key, settings.base_url)
        self.verifier = Verifier(settings.sendgrid_webhook_public_key)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(WEB_TEMPLATES),
            autoescape=lambda name: not (name or "").endswith(".txt.j2"),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        )
        self.signup = Signup(engine, settings, self.signer, make_mailer(settings), self.templates)
        self.css = (WEB_TEMPLATES / "style.css").read_bytes()

    # -- rendering ------------------------------------------------------------------------

    def page(self, template: str, status: int = 200, background=None, **ctx) -> HTMLResponse:
        s = self.settings
        base = {"newsletter": s.name, "lang": s.lang, "site_url": s.site_url, "root": self.root,
                "errors": {}}
        html = self.templates.get_template(template).render({**base, **ctx})
        return HTMLResponse(html, status_code=status, headers=HEADERS, background=background)

    def message(self, status: int, title: str, text: str, link: str = "", link_text: str = "") -> HTMLResponse:
        return self.page("message.html.j2", status, title=title, text=text, link=link, link_text=link_text)

    def sections_ctx(self, chosen) -> dict:
        s = self.settings
        defaults = s.default_sections
        defaults_text = "every section" if set(defaults) == set(s.sections) else \
            ", ".join(section_title(d) for d in defaults)
        return {"all_sections": [(name, section_title(name)) for name in s.sections],
                "chosen": tuple(chosen), "defaults_text": defaults_text}

    def manage_page(self, template: str, subscriber: Subscriber, token: str, status: int = 200, **ctx):
        values = {"name_value": subscriber.name, "saved": False, **self.sections_ctx(subscriber.sections), **ctx}
        return self.page(template, status, s=subscriber, token=token, csrf=self.guard.for_token(token),
                         masked_email=masked(subscriber.email), **values)

    # -- shared steps ---------------------------------------------------------------------

    async def subscriber_from(self, request: Request) -> tuple[Subscriber, str]:
        """The subscriber a manage link names, or a 404 that reads the same for every bad link."""
        token = request.path_params["token"]
        try:
            subscriber_id, tag = self.signer.read_manage_token(token)
        except TokenError:
            raise HTTPException(404) from None
        subscriber = await run_in_threadpool(store.get, self.engine, id=subscriber_id)
        # Erased since the email was sent, or the id now belongs to someone else (a
        # restore into a new database): the link must not reach them.
        if subscriber is None or not self.signer.belongs_to(tag, subscriber.email):
            raise HTTPException(404)
        return subscriber, token

    def check_form(self, request: Request, form, token: str) -> None:
        if not (self.guard.same_origin(request) and self.guard.token_ok(token, form.get("csrf"))):
            raise HTTPException(403)

    async def read_form(self, request: Request):
        """The posted fields, all text; a 400 page for anything else.

        Our forms have no file inputs: a file part is refused while parsing (max_files=0
        makes Starlette answer 400), and any value that is still not a str is refused here
        rather than reaching code that expects text.
        """
        form = await request.form(**FORM_LIMITS)
        if not all(isinstance(value, str) for _, value in form.multi_items()):
            raise HTTPException(400)
        return form

    # -- handlers -------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{self.root}/subscribe", status_code=303)

    async def stylesheet(self, request: Request) -> Response:
        return Response(self.css, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})

    async def preferences(self, request: Request) -> Response:
        subscriber, token = await self.subscriber_from(request)
        if request.method in SAFE_METHODS:
            return self.manage_page("preferences.html.j2", subscriber, token)
        form = await self.read_form(request)
        self.check_form(request, form, token)
        changes, errors = read_preferences(form, self.settings)
        if errors:
            return self.manage_page("preferences.html.j2", subscriber, token, 400, errors=errors,
                                    chosen=tuple(form.getlist("sections")),
                                    name_value=form.get("name", subscriber.name))
        try:
            saved = await run_in_threadpool(lambda: store.update(self.engine, subscriber.email, **changes))
        except SubscriberError:  # erased a moment ago
            raise HTTPException(404) from None
        return self.manage_page("preferences.html.j2", saved, token, saved=True)

    async def unsubscribe(self, request: Request) -> Response:
        subscriber, token = await self.subscriber_from(request)
        if request.method in SAFE_METHODS:
            return self.manage_page("unsubscribe.html.j2", subscriber, token)
        form = await self.read_form(request)
        # RFC 8058: mailbox providers post exactly this, with no form token; the link's
        # own signature is the authority, as it is for the GET.
        one_click = form.get("List-Unsubscribe") == "One-Click"
        if not one_click:
            self.check_form(request, form, token)
        reason = "one-click unsubscribe" if one_click else "unsubscribe page"
        subscriber = await run_in_threadpool(store.unsubscribe, self.engine, subscriber, reason)
        return self.manage_page("unsubscribe.html.j2", subscriber, token)

    async def subscribe(self, request: Request) -> Response:
        if request.method in SAFE_METHODS:
            return self.page("subscribe.html.j2", csrf=self.guard.for_signup(), shown={},
                             **self.sections_ctx(()))
        form = await self.read_form(request)
        if not (self.guard.same_origin(request) and self.guard.signup_ok(form.get("csrf"))):
            raise HTTPException(403)
        values, errors = read_signup(form, self.settings)
        if errors:
            shown = {"email": form.get("email", ""), "name": form.get("name", ""), "sections": form.getlist("sections")}
            return self.page("subscribe.html.j2", 400, csrf=self.guard.for_signup(), errors=errors, shown=shown,
                             **self.sections_ctx(shown["sections"]))
        # The email goes out after the answer, so the answer's timing says nothing either.
        return self.page("check_inbox.html.j2", email=values[0], background=BackgroundTask(self.send_signup, *values))

    def send_signup(self, email: str, name: str, sections: tuple[str, ...]) -> None:
        try:
            self.signup.request(email, name, sections)
        except Exception as e:  # after the response: log it, the person can simply try again
            # SendGrid down is expected now and then: one line, not a traceback in the log.
            log.error("could not send a sign-up email: %s: %s", type(e).__name__, e)

    async def confirm(self, request: Request) -> Response:
        """GET shows a button; only its POST confirms.

        Why two steps: mail scanners and link previews open (GET or HEAD) every link in an
        email, and that must not subscribe anyone.  The POST carries the same kind of form
        token as the other forms, and turns only a pending subscriber active, once.
        """
        token = request.path_params["token"]
        try:
            subscriber_id, tag = self.signer.read_confirm_token(token)
        except TokenError:
            return self.bad_confirm_link()
        subscriber = await run_in_threadpool(store.get, self.engine, id=subscriber_id)
        # Erased since the email was sent, or the id now belongs to someone else (a restore
        # that renumbered subscribers): the link must not confirm them.
        if subscriber is None or not self.signer.belongs_to(tag, subscriber.email):
            return self.bad_confirm_link()
        if request.method in SAFE_METHODS:
            if subscriber.status != "pending":
                return self.nothing_to_confirm()
            return self.page("confirm.html.j2", token=token, csrf=self.guard.for_token(token),
                             masked_email=masked(subscriber.email))
        form = await self.read_form(request)
        self.check_form(request, form, token)
        subscriber = await run_in_threadpool(self.signup.confirm, subscriber)
        if subscriber is None:
            return self.nothing_to_confirm()
        manage = self.signer.manage_token(subscriber.id, subscriber.email)
        return self.message(200, "You are subscribed", f"Thank you. {self.settings.name} will arrive every morning.",
                            f"{self.root}/preferences/{manage}", "Choose your sections")

    def bad_confirm_link(self) -> HTMLResponse:
        return self.message(404, "This confirmation link does not work",
                            "It may have expired (links last 7 days) or been cut short. "
                            "Sign up again to get a new one.", f"{self.root}/subscribe", "Sign up again")

    def nothing_to_confirm(self) -> HTMLResponse:
        # The same page whatever the reason (used already, unsubscribed since, bounced): a
        # confirmation link only ever finishes a pending sign-up, and says no more than that.
        return self.message(200, "Nothing to confirm",
                            "This confirmation link has been used already or is no longer needed, so nothing was "
                            "changed. To change your subscription, use the links at the bottom of any digest.")

    async def webhook(self, request: Request) -> Response:
        if not self.verifier.enabled:
            return JSONResponse({"error": "the event webhook is not configured"}, status_code=503)
        body = await read_capped(request, MAX_WEBHOOK_BODY)
        if body is None:
            return JSONResponse({"error": f"the body is larger than {MAX_WEBHOOK_BODY} bytes"}, status_code=413)
        headers = request.headers
        if not self.verifier.verify(body, headers.get("x-twilio-email-event-webhook-signature"),
                                    headers.get("x-twilio-email-event-webhook-timestamp")):
            return JSONResponse({"error": "missing, invalid or stale signature"}, status_code=403)
        try:
            events = parse_events(body)
        except MalformedEvents as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        tally = await run_in_threadpool(apply_events, self.engine, events)
        # Events that failed were released for a retry: a 5xx makes SendGrid redeliver the
        # batch, and the ones already applied then count as duplicates.
        return JSONResponse(tally.to_dict(), status_code=500 if tally.failed else 200)

    # -- errors ---------------------------------------------------------------------------

    async def http_error(self, request: Request, exc: HTTPException) -> Response:
        title, text = ERRORS.get(exc.status_code, ERRORS[400])
        return self.message(exc.status_code, title, text)

    async def database_error(self, request: Request, exc: OperationalError) -> Response:
        """A busy database (a long import or a send holds SQLite's write lock) is a 503,
        not a 500: nothing was changed, and the same request works a little later."""
        if not is_busy(exc):
            raise exc  # a real failure: the server error page, and the traceback in the log
        log.warning("%s %s: %s", request.method, redact(request.url.path), BUSY_MESSAGE)
        headers = {"Retry-After": "30"}
        if request.url.path == f"{self.root}/webhooks/sendgrid":  # SendGrid redelivers on a 5xx
            return JSONResponse({"error": BUSY_MESSAGE}, status_code=503, headers=headers)
        response = self.message(503, *ERRORS[503])
        response.headers.update(headers)
        return response

    async def server_error(self, request: Request, exc: Exception) -> Response:
        log.error("error on %s %s (the server logs the traceback)", request.method, redact(request.url.path))
        return self.message(500, *ERRORS[500])

    def startup_notes(self) -> list[str]:
        s = self.settings
        hook = (f"SendGrid event webhook at {s.base_url}/webhooks/sendgrid (signatures checked)"
                if self.verifier.enabled else
                "SENDGRID_WEBHOOK_PUBLIC_KEY is not set: /webhooks/sendgrid refuses every request (503)")
        signups = f"{s.outbox}/signups/" if s.signup_delivery == "outbox" else "SendGrid"
        return [f"preference centre at {s.base_url}/preferences/…", hook, f"sign-up emails go to {signups}"]

    # -- the app --------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        r = self.root
        routes = [
            Route(f"{r}/", self.home),
            Route(f"{r}/static/style.css", self.stylesheet),
            Route(f"{r}/preferences/{{token}}", self.preferences, methods=["GET", "POST"]),
            Route(f"{r}/unsubscribe/{{token}}", self.unsubscribe, methods=["GET", "POST"]),
            Route(f"{r}/subscribe", self.subscribe, methods=["GET", "POST"]),
            Route(f"{r}/confirm/{{token}}", self.confirm, methods=["GET", "POST"]),
            Route(f"{r}/webhooks/sendgrid", self.webhook, methods=["POST"]),
        ]
        return routes + ([Route(r, self.home)] if r else [])


# -- form reading (values in, values out) -----------------------------------------------------

def read_sections(form, settings: Settings, errors: dict) -> tuple[str, ...]:
    try:
        return settings.check_sections(form.getlist("sections"), "sections")
    except ConfigError:
        errors["sections"] = "Choose from the sections listed."
        return ()


def read_name(form, errors: dict) -> str:
    try:
        return store.clean_name(form.get("name", ""))
    except SubscriberError:
        errors["name"] = "Use at most 200 characters."
        return ""


def read_preferences(form, settings: Settings) -> tuple[dict, dict]:
    """The store changes a preference post asks for, and the errors by field name.

    A post of just `status` (the one-button resubscribe form on the unsubscribe page, or a
    script that only pauses) changes only the delivery.  Any other post is a preference
    save, with or without the page's hidden `form=preferences`:
    - `sections`: the ticked boxes.  A browser sends nothing for an unticked box, so no
      `sections` field means none chosen, i.e. the defaults.
    - `name`: changed only when the field is sent; a missing field is not an empty name.
    - `status`: active or paused, or absent / `keep`: leaving a bounced or unsubscribed
      status always needs that explicit choice.
    """
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    delivery_only = (form.get("form") != "preferences" and "status" in form
                     and "sections" not in form and "name" not in form)
    if not delivery_only:
        changes["sections"] = read_sections(form, settings, errors)
    if "name" in form:
        changes["name"] = read_name(form, errors)
    status = form.get("status", "keep")
    if status == "active":
        changes.update(status="active", reason=None)
    elif status == "paused":
        changes.update(status="paused", reason="paused on the preference page")
    elif status != "keep":
        errors["status"] = "Choose one of the delivery options."
    # The page says which status it showed (`shown`).  If it showed the digest on (active or
    # paused), the choice was between those two; by the time it is saved, the person may
    # have unsubscribed in one click or their address bounced: that stays (store.update).
    if "status" in changes and form.get("shown") in RECEIVING:
        changes["status_only_from"] = RECEIVING
    return changes, errors


def read_signup(form, settings: Settings) -> tuple[tuple, dict]:
    errors = {}
    try:
        email = normalize_email(form.get("email", ""))
    except SubscriberError:
        email = ""
        errors["email"] = "Enter your email address, like name@example.com."
    name = read_name(form, errors)
    sections = read_sections(form, settings, errors)
    return (email, name, sections), errors


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


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is (or says it is) larger than `limit` bytes.

    Why stream: `request.body()` would hold a body of any size in memory before we could
    refuse it, and the signature can only be checked over the whole body.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def masked(email: str) -> str:
    """j•••@example.com: enough to recognise one's address, too little to harvest it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"


_TOKEN_PATH = re.compile(r"/(preferences|unsubscribe|confirm)/[^/\s?\"]+")


def redact(text: str) -> str:
    return _TOKEN_PATH.sub(r"/\1/…", text)


class RedactTokens(logging.Filter):
    """Keeps link tokens (each one a key to someone's settings) out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


# -- entry points -------------------------------------------------------------------------------

def create_app(settings: Settings, engine=None) -> Starlette:
    """The ASGI app; ConfigError if it cannot run safely (no secret key, a malformed webhook key)."""
    if not settings.secret_key:
        raise ConfigError("DIGEST_SECRET_KEY is not set: the server will not sign links with a guessable key")
    if engine is None:
        try:
            engine = open_store(settings.database_url)
        except StoreError as e:
            raise ConfigError(str(e)) from None
    site = Site(settings, engine)

    @asynccontextmanager
    async def lifespan(app):
        logging.getLogger("uvicorn.access").addFilter(RedactTokens())
        for line in site.startup_notes():
            log.info(line)
        yield

    # Each handler takes the exception class it is registered for (Starlette's own
    # annotation says Exception for all of them).
    handlers: dict[Any, Callable[[Request, Any], Awaitable[Response]]] = {
        HTTPException: site.http_error, OperationalError: site.database_error, Exception: site.server_error}
    app = Starlette(routes=site.routes(), lifespan=lifespan, exception_handlers=handlers)
    # Starlette answers /subscribe/ with a redirect built from the request's Host header,
    # which a client chooses: no such redirects (a trailing slash is simply not found).
    app.router.redirect_slashes = False
    app.state.site = site
    return app


def run_server(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, server_header=False, log_level="info")
