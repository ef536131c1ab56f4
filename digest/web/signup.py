"""Sign-up pages: the form, "check your inbox", and the confirming click (double opt-in).
What sign-up means (who gets which email, when a link confirms) is subscribers.signup's."""

from __future__ import annotations

import logging

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from digest.config import Settings
from digest.subscribers import store
from digest.subscribers.signup import Signup, signup_transport
from digest.subscribers.store import SubscriberError, normalize_email
from digest.tokens import TokenError
from digest.web.security import SAFE_METHODS, read_form
from digest.web.site import Routes, Site, masked, read_name, read_sections

log = logging.getLogger("uvicorn.error")


# How many sign-ups one client (IP address) and the whole form may make: a person signs
# up once, so these only bite a script using the form to mail strangers.  In memory, per
# serve process; behind a proxy, run uvicorn with the proxy's address trusted so the
# client is the visitor, not the proxy.
PER_CLIENT = parse("10/10 minutes")
ALL_CLIENTS = parse("60/minute")


class SignupPages:
    def __init__(self, site: Site):
        self.site = site
        self.signup = Signup(site.engine, site.settings, site.signer, signup_transport(site.settings), site.templates)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def too_many(self, request: Request) -> HTMLResponse | None:
        """A 429 page when this client, or everyone together, signed up too often just now."""
        client = request.client.host if request.client else "unknown"
        if not self.limiter.hit(PER_CLIENT, "signup-client", client):
            why = "Too many sign-ups came from your network in the last minutes."
        elif not self.limiter.hit(ALL_CLIENTS, "signup-all"):
            why = "Sign-ups are paused for a moment: too many arrived at once."
        else:
            return None
        response = self.site.message(429, "Please try again in a few minutes", why, f"{self.site.root}/subscribe",
                                     "Back to the form")
        response.headers["Retry-After"] = "600" if "network" in why else "60"
        return response

    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{self.site.root}/subscribe", status_code=303)

    async def subscribe(self, request: Request) -> Response:
        site = self.site
        if request.method in SAFE_METHODS:
            return site.page("subscribe.html.j2", csrf=site.guard.for_signup(), shown={}, **site.sections_ctx(()))
        form = await read_form(request)
        site.guard.check_signup_form(request, form)
        if form.get("website"):  # the honeypot: a bot filled it; it is told what a person is told
            log.info("sign-up ignored: the hidden honeypot field was filled in")
            return site.page("check_inbox.html.j2", email=str(form.get("email", "")))
        values, errors = read_signup(form, site.settings)
        if errors:
            chosen = [str(v) for v in form.getlist("sections")]
            shown = {"email": form.get("email", ""), "name": form.get("name", ""), "sections": chosen}
            return site.page("subscribe.html.j2", 400, csrf=site.guard.for_signup(), errors=errors, shown=shown,
                             **site.sections_ctx(chosen))
        limited = self.too_many(request)
        if limited is not None:
            return limited
        # The email goes out after the answer, so the answer's timing says nothing either.
        return site.page("check_inbox.html.j2", email=values[0], background=BackgroundTask(self.send_signup, *values))

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
        site = self.site
        token = request.path_params["token"]
        try:
            subscriber_id, tag = site.signer.read_confirm_token(token)
        except TokenError:
            return self.bad_confirm_link()
        subscriber = await run_in_threadpool(store.get, site.engine, id=subscriber_id)
        # Erased since the email was sent, or the id now belongs to someone else (a restore
        # that renumbered subscribers): the link must not confirm them.
        if subscriber is None or not site.signer.belongs_to(tag, subscriber.email):
            return self.bad_confirm_link()
        if request.method in SAFE_METHODS:
            if subscriber.status != "pending":
                return self.nothing_to_confirm()
            return site.page("confirm.html.j2", token=token, csrf=site.guard.for_token(token),
                             masked_email=masked(subscriber.email))
        form = await read_form(request)
        site.guard.check_form(request, form, token)
        confirmed = await run_in_threadpool(self.signup.confirm, subscriber)
        if confirmed is None:
            return self.nothing_to_confirm()
        manage = site.signer.manage_token(confirmed.id, confirmed.email)
        return site.message(200, "You are subscribed", f"Thank you. {site.settings.name} will arrive every morning.",
                            f"{site.root}/preferences/{manage}", "Choose your sections")

    def bad_confirm_link(self) -> HTMLResponse:
        return self.site.message(404, "This confirmation link does not work",
                                 "It may have expired (links last 7 days) or been cut short. "
                                 "Sign up again to get a new one.", f"{self.site.root}/subscribe", "Sign up again")

    def nothing_to_confirm(self) -> HTMLResponse:
        # The same page whatever the reason (used already, unsubscribed since, bounced): a
        # confirmation link only ever finishes a pending sign-up, and says no more than that.
        return self.site.message(200, "Nothing to confirm",
                                 "This confirmation link has been used already or is no longer needed, so nothing "
                                 "was changed. To change your subscription, use the links at the bottom of any digest.")


def routes(site: Site) -> Routes:
    pages = SignupPages(site)
    r = site.root
    s = site.settings
    signups = f"{s.outbox}/signups/" if s.signup_delivery == "outbox" else "SendGrid"
    routes: list[BaseRoute] = [
        Route(f"{r}/", pages.home),
        Route(f"{r}/subscribe", pages.subscribe, methods=["GET", "POST"]),
        Route(f"{r}/confirm/{{token}}", pages.confirm, methods=["GET", "POST"]),
    ]
    if r:
        routes.append(Route(r, pages.home))
    return Routes(routes, notes=[f"sign-up emails go to {signups}"])


def read_signup(form: FormData, settings: Settings) -> tuple[tuple[str, str, tuple[str, ...]], dict]:
    errors: dict = {}
    try:
        email = normalize_email(str(form.get("email", "")))
    except SubscriberError:
        email = ""
        errors["email"] = "Enter your email address, like name@example.com."
    name = read_name(form, errors)
    sections = read_sections(form, settings, errors)
    return (email, name, sections), errors
