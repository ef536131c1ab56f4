"""A subscriber's own pages, reached from the links in every email: the preference centre
(sections, name, pause or resume) and unsubscribe, one-click (RFC 8058) included."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.config import Settings
from digest.subscribers import store
from digest.subscribers.store import DELIVERY_CHOICES, SubscriberError
from digest.web.security import SAFE_METHODS, read_form, subscriber_from
from digest.web.site import Routes, Site, read_name, read_sections


class Preferences:
    def __init__(self, site: Site):
        self.site = site

    async def preferences(self, request: Request) -> Response:
        site = self.site
        subscriber, token = await subscriber_from(request, site.signer, site.engine)
        if request.method in SAFE_METHODS:
            return site.manage_page("preferences.html.j2", subscriber, token)
        form = await read_form(request)
        site.guard.check_form(request, form, token)
        changes, errors = read_preferences(form, site.settings)
        if errors:
            return site.manage_page("preferences.html.j2", subscriber, token, 400, errors=errors,
                                    chosen=tuple(form.getlist("sections")),
                                    name_value=form.get("name", subscriber.name))
        try:
            saved = await run_in_threadpool(lambda: store.update(site.engine, subscriber.email, **changes))
        except SubscriberError:  # erased a moment ago
            raise HTTPException(404) from None
        return site.manage_page("preferences.html.j2", saved, token, saved=True)

    async def unsubscribe(self, request: Request) -> Response:
        site = self.site
        subscriber, token = await subscriber_from(request, site.signer, site.engine)
        if request.method in SAFE_METHODS:
            return site.manage_page("unsubscribe.html.j2", subscriber, token)
        form = await read_form(request)
        # RFC 8058: mailbox providers post exactly this, with no form token; the link's
        # own signature is the authority, as it is for the GET.
        one_click = form.get("List-Unsubscribe") == "One-Click"
        if not one_click:
            site.guard.check_form(request, form, token)
        reason = "one-click unsubscribe" if one_click else "unsubscribe page"
        subscriber = await run_in_threadpool(store.unsubscribe, site.engine, subscriber, reason)
        return site.manage_page("unsubscribe.html.j2", subscriber, token)


def routes(site: Site) -> Routes:
    pages = Preferences(site)
    r = site.root
    return Routes([
        Route(f"{r}/preferences/{{token}}", pages.preferences, methods=["GET", "POST"]),
        Route(f"{r}/unsubscribe/{{token}}", pages.unsubscribe, methods=["GET", "POST"]),
    ], notes=[f"preference centre at {site.settings.base_url}/preferences/…"])


def read_preferences(form: FormData, settings: Settings) -> tuple[dict, dict]:
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
    changes: dict = {}
    errors: dict = {}
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
    if "status" in changes and form.get("shown") in DELIVERY_CHOICES:
        changes["status_only_from"] = DELIVERY_CHOICES
    return changes, errors
