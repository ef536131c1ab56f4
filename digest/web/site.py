"""What every audience of the web app shares: the settings and store, the signer and form
guard, page rendering (Jinja2 over templates/web/), and reading the fields forms share.

Handlers are thin: read the request, call the library (the store in a worker thread:
SQLite may wait on the sender's lock), render a page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Iterable
from urllib.parse import urlsplit

import jinja2
from sqlalchemy.engine import Engine
from starlette.background import BackgroundTask
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute

from digest import delivery_time
from digest.config import ConfigError, Settings
from digest.delivery_time import hour_label, weekday_name
from digest.render import TEMPLATES_DIR, section_title
from digest.subscribers import store
from digest.subscribers.store import Subscriber, SubscriberError
from digest.tokens import Signer
from digest.web.security import HEADERS, FormGuard

WEB_TEMPLATES = TEMPLATES_DIR / "web"

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


@dataclass
class Routes:
    """What one audience module adds to the app: its routes (paths under the site's root)
    and the lines it logs when the server starts."""
    routes: list[BaseRoute]
    notes: list[str] = field(default_factory=list)


class Site:
    """The app's shared state; each audience module builds its handlers over it."""

    def __init__(self, settings: Settings, engine: Engine):
        self.settings = settings
        self.engine = engine
        self.root = urlsplit(settings.base_url).path.rstrip("/")
        self.signer = Signer(settings.secret_key)
        self.guard = FormGuard(settings.secret_key, settings.base_url)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(WEB_TEMPLATES),
            autoescape=lambda name: not (name or "").endswith(".txt.j2"),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        )
        self.notes: list[str] = []

    def startup_notes(self) -> list[str]:
        """What the mounted audiences say when the server starts."""
        return list(self.notes)

    def page(self, template: str, status: int = 200, background: BackgroundTask | None = None,
             headers: dict[str, str] | None = None, **ctx: Any) -> HTMLResponse:
        s = self.settings
        base = {"newsletter": s.name, "lang": s.lang, "site_url": s.site_url, "root": self.root,
                "errors": {}}
        html = self.templates.get_template(template).render({**base, **ctx})
        return HTMLResponse(html, status_code=status, headers=headers or HEADERS, background=background)

    def message(self, status: int, title: str, text: str, link: str = "", link_text: str = "") -> HTMLResponse:
        return self.page("message.html.j2", status, title=title, text=text, link=link, link_text=link_text)

    def sections_ctx(self, chosen: Iterable[str]) -> dict:
        s = self.settings
        defaults = s.default_sections
        defaults_text = "every section" if set(defaults) == set(s.sections) else \
            ", ".join(section_title(d) for d in defaults)
        return {"all_sections": [(name, section_title(name)) for name in s.sections],
                "chosen": tuple(chosen), "defaults_text": defaults_text}

    def delivery_ctx(self, s: Subscriber) -> dict:
        """When the digest reaches this reader, in words and as the form's current values."""
        st = self.settings
        zone, hour, weekday, pause = delivery_time.place_of(s.zone(st)), s.hour(st), s.weekly_on(st), s.pause_ahead(st)
        every = f"every {weekday_name(weekday).capitalize()}" if s.cadence == "weekly" else "every day"
        return {"when_text": f"{every} at {hour_label(hour)}, {zone.replace('_', ' ')} time",
                "pause_ahead": pause, "pause_text": long_date(pause) if pause else "",
                "zone_groups": delivery_time.zone_groups(), "newsletter_zone": st.timezone,
                "hours": [(h, hour_label(h)) for h in delivery_time.HOURS],
                "weekdays": [(i, d.capitalize()) for i, d in enumerate(delivery_time.WEEKDAYS)],
                "zone_value": zone, "hour_value": str(hour), "cadence_value": s.cadence,
                "weekday_value": str(weekday), "pause_value": pause.isoformat() if pause else "",
                "pause_min": (delivery_time.today_in(zone) + timedelta(days=1)).isoformat()}

    def manage_page(self, template: str, subscriber: Subscriber, token: str, status: int = 200,
                    **ctx: Any) -> HTMLResponse:
        values = {"name_value": subscriber.name, "saved": False, **self.sections_ctx(subscriber.sections),
                  **self.delivery_ctx(subscriber), **ctx}
        return self.page(template, status, s=subscriber, token=token, csrf=self.guard.for_token(token),
                         masked_email=masked(subscriber.email), **values)


def long_date(day: date) -> str:
    """'Friday 18 December 2026'."""
    return f"{day:%A} {day.day} {day:%B %Y}"


def masked(email: str) -> str:
    """j•••@example.com: enough to recognise one's address, too little to harvest it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"


# -- form reading (values in, values out) -----------------------------------------------------

def read_sections(form: FormData, settings: Settings, errors: dict) -> tuple[str, ...]:
    try:
        return settings.check_sections(form.getlist("sections"), "sections")
    except ConfigError:
        errors["sections"] = "Choose from the sections listed."
        return ()


def read_name(form: FormData, errors: dict) -> str:
    try:
        return store.clean_name(str(form.get("name", "")))
    except SubscriberError:
        errors["name"] = "Use at most 200 characters."
        return ""
