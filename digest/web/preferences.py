"""A subscriber's own pages, reached from the links in every email: the preference centre
(sections, name, pause or resume) and unsubscribe, one-click (RFC 8058) included."""

from __future__ import annotations

from datetime import timedelta

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest import delivery_time
from digest.config import Settings
from digest.delivery_time import DeliveryTimeError
from digest.subscribers import store
from digest.subscribers.store import DELIVERY_CHOICES, DeliveryError, Subscriber, SubscriberError
from digest.web.security import SAFE_METHODS, SCRIPT_HEADERS, read_form, subscriber_from
from digest.web.site import Routes, Site, read_name, read_sections

PAGE = "preferences.html.j2"
# What the page says under a delivery field whose posted value cannot be used.
DELIVERY_ERRORS = {
    "timezone": "Choose a time zone from the list.",
    "hour": "Choose an hour from the list.",
    "cadence": "Choose daily or weekly.",
    "weekday": "Choose a day of the week.",
}


class Preferences:
    def __init__(self, site: Site):
        self.site = site

    async def preferences(self, request: Request) -> Response:
        site = self.site
        subscriber, token = await subscriber_from(request, site.signer, site.engine)
        if request.method in SAFE_METHODS:
            return self.page(subscriber, token)
        form = await read_form(request)
        site.guard.check_form(request, form, token)
        changes, errors = read_preferences(form, site.settings, subscriber)
        if errors:
            return self.page(subscriber, token, 400, errors=errors, chosen=tuple(form.getlist("sections")),
                             name_value=form.get("name", subscriber.name), **posted_delivery(form))
        try:
            saved = await run_in_threadpool(lambda: store.update(site.engine, subscriber.email,
                                                                 settings=site.settings, **changes))
        except DeliveryError as e:  # a pause checked against a zone changed a moment ago
            return self.page(subscriber, token, 400, errors={e.field: e.why}, **posted_delivery(form))
        except SubscriberError:  # erased a moment ago
            raise HTTPException(404) from None
        return self.page(saved, token, saved=True, resumed=form.get("form") == "resume")

    def page(self, subscriber: Subscriber, token: str, status: int = 200, **ctx) -> Response:
        # The page loads one script of ours (the browser's time-zone suggestion): CSP allows it.
        return self.site.manage_page(PAGE, subscriber, token, status, headers=SCRIPT_HEADERS, **ctx)

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


def read_preferences(form: FormData, settings: Settings, subscriber: Subscriber | None = None) -> tuple[dict, dict]:
    """The store changes a preference post asks for, and the errors by field name.

    A post of just `status` (the one-button resubscribe form on the unsubscribe page, or a
    script that only pauses) changes only the delivery.  A post of `form=resume` (the
    "Resume now" button) ends a pause: the pause date, and a paused status.  Any other post
    is a preference save, with or without the page's hidden `form=preferences`:
    - `sections`: the ticked boxes.  A browser sends nothing for an unticked box, so no
      `sections` field means none chosen, i.e. the defaults.
    - `name`: changed only when the field is sent; a missing field is not an empty name.
    - `status`: active or paused, or absent / `keep`: leaving a bounced or unsubscribed
      status always needs that explicit choice.
    - the delivery time (`timezone`, `hour`, `cadence`, `weekday`, `paused_until`): see
      read_delivery.
    """
    if form.get("form") == "resume":
        return {"delivery": {"paused_until": None}, "status": "active", "reason": None,
                "status_only_from": ("paused",)}, {}
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
    delivery = read_delivery(form, settings, subscriber, errors)
    if delivery:
        changes["delivery"] = delivery
    return changes, errors


def read_delivery(form: FormData, settings: Settings, subscriber: Subscriber | None, errors: dict) -> dict:
    """The delivery fields the post changes (store.check_delivery's input), errors by field.

    A field not sent is not changed.  A field sent with the value the page showed is not
    changed either: a reader who never chose a time follows the newsletter's `timezone`,
    `delivery_hour` and `weekly_weekday` (NULL in the store) until they pick another, even
    after saving their sections.  An empty `paused_until` means no pause.
    """
    shown = {"timezone": settings.timezone, "hour": settings.delivery_hour, "cadence": "daily",
             "weekday": settings.weekly_weekday}
    if subscriber is not None:
        shown = {"timezone": subscriber.zone(settings), "hour": subscriber.hour(settings),
                 "cadence": subscriber.cadence, "weekday": subscriber.weekly_on(settings)}
    shown["timezone"] = delivery_time.place_of(str(shown["timezone"]))  # as the picker showed it
    checks = {"timezone": delivery_time.check_zone, "hour": delivery_time.check_hour,
              "cadence": delivery_time.check_cadence, "weekday": delivery_time.check_weekday}
    delivery: dict = {}
    for field, check in checks.items():
        if field not in form:
            continue
        try:
            value = check(form[field])
        except DeliveryTimeError:
            errors[field] = DELIVERY_ERRORS[field]
            continue
        if value != shown[field]:
            delivery[field] = value
    if "paused_until" in form:
        raw = str(form["paused_until"]).strip()
        pause = subscriber.pause_ahead(settings) if subscriber else None
        zone = str(delivery.get("timezone") or shown["timezone"])
        if not raw:
            if pause:
                delivery["paused_until"] = None
        elif raw != (pause.isoformat() if pause else None):
            try:
                delivery["paused_until"] = delivery_time.check_pause(raw, zone)
            except DeliveryTimeError:
                tomorrow = delivery_time.today_in(zone) + timedelta(days=1)
                errors["paused_until"] = f"Choose a day from {tomorrow:%-d %B %Y} on, or leave it empty."
    return delivery


def posted_delivery(form: FormData) -> dict:
    """The delivery values a reader posted, to show them again beside an error."""
    names = {"timezone": "zone_value", "hour": "hour_value", "cadence": "cadence_value",
             "weekday": "weekday_value", "paused_until": "pause_value"}
    return {shown: str(form[field]) for field, shown in names.items() if field in form}
