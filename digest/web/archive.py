"""The web version of every digest, and the archive of past editions.

`/view/{date}/{mask}` is the "View in your browser" link of every email: the digest of
that section mask (the ledger's resolved mask, digest.select.digest_for_mask: the very
selection the sender made) from the edition frozen when that day's send started,
assembled by the same renderer from the same parts, so it is the email the reader got.
It holds no personal data: the greeting has no name, and the footer's links to the
preference centre appear only when the link's `?t=` is a manage token the site's signer
verifies, naming a subscriber who still exists (the reader's own link); otherwise they
are left out.

`/archive` lists the frozen editions, newest first; `/archive/{date}` is the full
edition (every offered section).  `archive = false` in digest.toml turns both off (404);
the `/view/` links already sent keep working.

A day that was never frozen (nothing sent yet), a malformed date or mask, or a digest
with no story is a 404.  Pages are assembled once per (date, mask) and kept in memory;
a refrozen edition (`digest send --refreeze`) is noticed and rendered again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import date

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest.config import ConfigError, check_day, section_mask
from digest.edition import load_edition
from digest.render import EditionRenderer, Personal, Renderer, RenderError, fill
from digest.select import DEFAULTED, WEEKLY_PREFIX, digest_for_mask
from digest.store import editions
from digest.subscribers import store
from digest.tokens import TokenError
from digest.web.site import Routes, Site

# The email as a page: its inline styles and <style> blocks, its images; nothing else
# (no script, no form, no frame).  Links out to stories must not carry the page's URL,
# which may hold the reader's token.
VIEW_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
                               "form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
PAGES = 64      # assembled pages kept (per date, mask and whether the token links are in)
EDITIONS = 4    # editions whose rendered parts are kept


def parse_day(raw: str) -> date:
    """A YYYY-MM-DD date as written in our links, or a 404."""
    try:
        day = check_day(date.fromisoformat(raw))
    except (ValueError, ConfigError):
        raise HTTPException(404) from None
    if day.isoformat() != raw:  # fromisoformat takes other spellings too; links use this one
        raise HTTPException(404)
    return day


def parse_mask(raw: str) -> int:
    """A resolved section mask (digest.select.resolved_mask) as written in our links, or a 404."""
    if not raw.isdigit() or str(int(raw)) != raw:
        raise HTTPException(404)
    mask = int(raw)
    if not 0 < mask & (DEFAULTED - 1) or mask >= 2 * DEFAULTED:
        raise HTTPException(404)
    return mask


class Archive:
    def __init__(self, site: Site):
        self.site = site
        self.renderer = Renderer(site.settings)
        self._lock = threading.Lock()
        self._editions: OrderedDict[date, EditionRenderer] = OrderedDict()
        self._pages: OrderedDict[tuple[date, int, bool], str] = OrderedDict()

    # -- the library side, in a worker thread ---------------------------------------------------

    def edition(self, day: date) -> EditionRenderer:
        """The renderer of `day`'s frozen edition; a 404 if the day was never frozen."""
        edition = load_edition(self.site.engine, day, self.site.settings)
        if not edition.frozen:
            raise HTTPException(404)
        with self._lock:
            cached = self._editions.get(day)
            if cached is not None and cached.edition.articles == edition.articles:
                self._editions.move_to_end(day)
                return cached
            rendering = self.renderer.edition(edition)  # new, or refrozen since: its pages are stale
            self._editions[day] = rendering
            for key in [k for k in self._pages if k[0] == day]:
                del self._pages[key]
            while len(self._editions) > EDITIONS:
                self._editions.popitem(last=False)
            return rendering

    def page(self, day: date, mask: int, manage: bool) -> str:
        """The digest's web version, tokens unfilled; a 404 for a digest with no story."""
        rendering = self.edition(day)
        key = (day, mask, manage)
        with self._lock:
            if key in self._pages:
                self._pages.move_to_end(key)
                return self._pages[key]
        digest = digest_for_mask(rendering.edition, mask, self.site.settings)
        if digest.is_empty:
            raise HTTPException(404)
        html_doc = rendering.web_html(digest, manage)  # the parts render once, under the edition's lock
        with self._lock:
            self._pages[key] = html_doc
            while len(self._pages) > PAGES:
                self._pages.popitem(last=False)
        return html_doc

    def own_token(self, token: str) -> bool:
        """Is `token` a manage token of ours, naming a subscriber who still exists?"""
        signer = self.site.signer
        try:
            subscriber_id, tag = signer.read_manage_token(token)
        except TokenError:
            return False
        subscriber = store.get(self.site.engine, id=subscriber_id)
        return subscriber is not None and signer.belongs_to(tag, subscriber.email)

    def frozen_days(self) -> list[date]:
        with self.site.engine.connect() as conn:
            # Daily editions only: the weekly digest has no web version (its email links to none).
            rows = conn.execute(select(editions.c.date).where(~editions.c.date.like(f"{WEEKLY_PREFIX}%"))
                                .order_by(editions.c.date.desc())).all()
        return [date.fromisoformat(str(r.date)[:10]) for r in rows]

    # -- handlers --------------------------------------------------------------------------------

    def respond(self, html_doc: str, token: str = "") -> Response:
        headers = dict(VIEW_HEADERS)
        # With a token the page is one person's; without, every reader of that digest's.
        headers["Cache-Control"] = "private, no-store" if token else "public, max-age=300"
        return HTMLResponse(fill(html_doc, Personal("", token).substitutions()), headers=headers)

    async def view(self, request: Request) -> Response:
        day, mask = parse_day(request.path_params["date"]), parse_mask(request.path_params["mask"])
        token = request.query_params.get("t", "")
        manage = bool(token) and await run_in_threadpool(self.own_token, token)
        html_doc = await self.rendered(day, mask, manage)
        return self.respond(html_doc, token if manage else "")

    async def rendered(self, day: date, mask: int, manage: bool) -> str:
        try:
            return await run_in_threadpool(self.page, day, mask, manage)
        except RenderError:
            raise HTTPException(500) from None

    async def index(self, request: Request) -> Response:
        site = self.site
        days = await run_in_threadpool(self.frozen_days)
        items = [(f"{site.root}/archive/{d.isoformat()}", f"{d:%A} {d.day} {d:%B %Y}") for d in days]
        return site.page("archive.html.j2", title="Past editions", items=items)

    async def full_edition(self, request: Request) -> Response:
        day = parse_day(request.path_params["date"])
        html_doc = await self.rendered(day, section_mask(self.site.settings.sections), False)
        return self.respond(html_doc)


async def not_found(request: Request) -> Response:
    raise HTTPException(404)


def routes(site: Site) -> Routes:
    pages = Archive(site)
    r, base = site.root, site.settings.base_url
    archive_on = site.settings.archive
    notes = [f"web versions of sent digests at {base}/view/…",
             f"archive of past editions at {base}/archive" if archive_on else "archive off (archive = false)"]
    return Routes([
        Route(f"{r}/view/{{date}}/{{mask}}", pages.view),
        Route(f"{r}/archive", pages.index if archive_on else not_found),
        Route(f"{r}/archive/{{date}}", pages.full_edition if archive_on else not_found),
    ], notes=notes)

