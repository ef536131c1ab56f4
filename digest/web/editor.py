"""The editors' desk, under {root}/editor: sign-in, the edition of any day, preview as anyone.

- `/editor/sign-in` (GET, POST) and `/editor/sign-out` (POST): accounts of digest.editors,
  the session of digest.web.sessions.  Everything else under /editor needs a signed-in
  editor: a GET without one is sent to the sign-in form, a POST is refused (403).
- `/editor?date=D` (default: today in the newsletter's zone): the lead story and each
  section's stories in the order readers get them (digest.select, as the send does), how
  many active readers get each section, and the change log.  While the edition is live,
  a story can be made the lead, moved up or down, withdrawn or restored
  (`POST /editor/curate`, digest.articles.curation, each change recorded with the
  editor's address); once sending has started it is read-only.
- `/editor/preview?date=D` with `subscriber=EMAIL`, `sections=…` or neither (every
  section): digest.preview's message at phone and desktop widths, with its text part
  and inbox line.  The email itself comes from `/editor/preview/email`, in a sandboxed
  frame and under a `sandbox` content security policy: no script of it runs, and it
  cannot reach the desk.  Its links are signed with a throwaway key, so they lead nowhere.
- `POST /editor/preview/test-send`: the previewed digest as a test send (digest.testsend:
  subject `[TEST] `, only to editors and `[editors] test_recipients`, no ledger row,
  nothing frozen), signed with the preview's throwaway key, so the message that arrives
  is the one the preview shows; the page says what went, to whom and how, or who was refused.
- `/editor/check?date=D`: the edition's quality report, digest.check's (as `digest check`);
  the edition page shows its one-line summary.

Every form carries the session's CSRF value; desk pages are `no-store` and may be framed
only by the desk itself.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, timedelta
from functools import wraps
from urllib.parse import urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from digest import editors
from digest.articles.curation import CurationError, changes, feature, move, restore, withdraw
from digest.articles.repository import articles_published_on
from digest.check import WHOLE_EDITION, Finding, Report, audience, check_edition
from digest.config import ConfigError, check_day, mask_sections
from digest.edition import frozen_at, load_edition
from digest.preview import Preview, PreviewError, preview
from digest.render import section_title
from digest.select import DEFAULTED, Edition, lead_story, resolved_mask, select_digest, story_order
from digest.subscribers import store
from digest.testsend import TestSend, TestSendError, allowed_test_recipients, checked_recipients, send_test
from digest.tokens import Signer, throwaway_key
from digest.web.security import HEADERS, SAFE_METHODS, read_form
from digest.web.sessions import Session, Sessions
from digest.web.site import Routes, Site

# Desk pages: as the subscriber pages, plus frames of the desk's own preview route.
DESK_HEADERS = {
    **HEADERS,
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; "
                               "form-action 'self'; frame-ancestors 'self'; base-uri 'none'",
    "X-Frame-Options": "SAMEORIGIN",
    "Cache-Control": "no-store",
}
# The previewed email: from outside (stories' titles, images), so it runs sandboxed (an
# opaque origin, no script, no forms) whatever the frame around it says.
EMAIL_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; "
                               "frame-ancestors 'self'",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# The desk's menu, as (label, path under /editor).  A test send is made from the preview
# of what is to be sent, so its entry opens the preview (of everything) at its form.
NAV: list[tuple[str, str]] = [("Edition", ""), ("Preview", "/preview"), ("Check", "/check"),
                              ("Test send", "/preview#test-send")]
ACTIONS = ("feature", "up", "down", "withdraw", "restore")
PREVIEWS = 16  # rendered previews kept: the page and its two frames ask for the same one
REPORTS = 8    # quality reports kept: the edition page and the check page share one per state
MAX_TEST_TO = 2000  # characters of addresses in the test-send form (the allow-list is short)


@dataclass(frozen=True)
class Visit:
    """A signed-in editor's request: who, their session, and the posted form (POST only)."""
    editor: editors.Editor
    session: Session
    form: FormData | None = None


def signed_in(handler):
    """Only for a signed-in editor: a GET without a session goes to the sign-in form, a POST
    is refused, and so is a POST without the session's CSRF value (or from another site)."""
    @wraps(handler)
    async def wrapped(desk: "Desk", request: Request) -> Response:
        session = desk.sessions.read(request)
        editor = await desk.editor_of(session)
        if editor is None or session is None:
            if request.method in SAFE_METHODS:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"{desk.root}/sign-in?{urlencode({'next': target})}", 303,
                                        headers={"Cache-Control": "no-store"})
            raise HTTPException(403)
        form = None
        if request.method not in SAFE_METHODS:
            form = await read_form(request)
            if not (desk.site.guard.same_origin(request) and desk.sessions.csrf_ok(session, form.get("csrf"))):
                raise HTTPException(403)
        visit = Visit(editor, session, form)
        try:
            return await handler(desk, request, visit)
        except BadDay as e:
            return desk.page("message.html.j2", visit, 400, title="No such day", text=str(e), link=desk.root,
                             link_text="Today's edition")
    return wrapped


class BadDay(ValueError):
    """A `date` that is not a day like 2026-11-25; the message says so."""


def parse_day(raw: str | None, today: date) -> date:
    if not raw:
        return today
    try:
        return check_day(date.fromisoformat(raw.strip()))
    except (ValueError, ConfigError):
        raise BadDay(f"The date {raw[:40]!r} is not a day like {today.isoformat()}.") from None


class Desk:
    def __init__(self, site: Site):
        self.site = site
        self.root = f"{site.root}/editor"
        self.sessions = Sessions(site.settings.secret_key, site.settings.base_url, self.root)
        # Previews' links are well-formed but lead nowhere: a preview as a subscriber must
        # not hand the editor that subscriber's own manage link.
        self.preview_signer = Signer(throwaway_key())
        self._lock = threading.Lock()
        self._previews: OrderedDict[tuple, Preview] = OrderedDict()
        self._reports: OrderedDict[tuple, Report] = OrderedDict()

    def page(self, template: str, visit: Visit | None, status: int = 200, **ctx) -> HTMLResponse:
        signed = {"editor": visit.editor.email, "csrf": self.sessions.csrf(visit.session)} if visit else {}
        # On a page of one day, the menu stays on that day (Check of the 24th -> its preview).
        day = ctx.get("day")
        query = f"?{urlencode({'date': day.isoformat()})}" if isinstance(day, date) else ""
        nav = []
        for label, target in NAV:
            path, _, anchor = target.partition("#")
            nav.append((label, f"{self.root}{path}{query}" + (f"#{anchor}" if anchor else "")))
        tz = self.site.settings.tz
        return self.site.page(template, status, headers=DESK_HEADERS, desk=self.root, nav=nav,
                              local=lambda when: when.astimezone(tz).strftime("%H:%M %Z"),
                              **{"editor": "", **signed, **ctx})

    # -- signing in and out ------------------------------------------------------------------

    async def editor_of(self, session: Session | None) -> editors.Editor | None:
        """The signed-in editor of a session; None when signed out or the account is gone."""
        if session is None or session.editor_id is None:
            return None
        editor_id = session.editor_id
        editor = await run_in_threadpool(lambda: editors.get(self.site.engine, editor_id))
        # Signed out since (here or on another device): this session is over.
        return editor if editor is not None and editor.session_epoch == session.epoch else None

    def next_page(self, raw: object) -> str:
        """Where to go after signing in: a desk page asked for, never another site."""
        if isinstance(raw, str) and "\\" not in raw:
            parts = urlsplit(raw)
            if (not parts.scheme and not parts.netloc and not raw.startswith("//")
                    and (parts.path == self.root or parts.path.startswith(self.root + "/"))):
                return raw
        return self.root

    async def sign_in(self, request: Request) -> Response:
        session = self.sessions.read(request)
        if request.method in SAFE_METHODS:
            if session and session.editor_id is not None and await self.editor_of(session) is not None:
                return RedirectResponse(self.next_page(request.query_params.get("next")), 303,
                                        headers={"Cache-Control": "no-store"})
            # The form's own session, kept while it lasts: a second tab's form stays valid.
            anonymous = session if session and session.editor_id is None else self.sessions.new(None)
            return self.sign_in_form(anonymous, request.query_params.get("next", ""),
                                     signed_out="signed-out" in request.query_params)
        form = await read_form(request)
        if not (self.site.guard.same_origin(request) and self.sessions.csrf_ok(session, form.get("csrf"))):
            raise HTTPException(403)
        assert session is not None
        email, password = str(form.get("email", "")), str(form.get("password", ""))
        try:
            editor = await run_in_threadpool(editors.sign_in, self.site.engine, email, password)
        except editors.SignInError as e:
            response = self.sign_in_form(session, str(form.get("next", "")), email=email, error=str(e),
                                         status=429 if e.locked_until else 400)
            if e.locked_until:
                response.headers["Retry-After"] = str(int(editors.LOCKED_FOR.total_seconds()))
            return response
        signed = RedirectResponse(self.next_page(form.get("next")), 303, headers={"Cache-Control": "no-store"})
        # A new nonce: nothing planted before signing in survives it.
        self.sessions.keep(signed, self.sessions.new(editor.id, editor.session_epoch))
        return signed

    def sign_in_form(self, session: Session, next_page: str, email: str = "", error: str = "",
                     status: int = 200, signed_out: bool = False) -> HTMLResponse:
        response = self.page("editor_sign_in.html.j2", None, status, title="Editors' desk: sign in",
                             csrf=self.sessions.csrf(session), email=email, error=error, next=next_page,
                             signed_out=signed_out, min_password=editors.MIN_PASSWORD)
        self.sessions.keep(response, session)
        return response

    @signed_in
    async def sign_out(self, request: Request, visit: Visit) -> Response:
        """Every session of this editor ends (on every device), and the cookie goes."""
        await run_in_threadpool(editors.end_sessions, self.site.engine, visit.editor.id)
        response = RedirectResponse(f"{self.root}/sign-in?signed-out", 303, headers={"Cache-Control": "no-store"})
        self.sessions.end(response)
        return response

    # -- the edition ---------------------------------------------------------------------------

    def edition_view(self, day: date) -> dict:
        """What the edition page shows of `day` (in a worker thread: it reads the store)."""
        s, engine = self.site.settings, self.site.engine
        edition = load_edition(engine, day, s)
        started = frozen_at(engine, day) if edition.frozen else None
        lead = lead_story(edition.articles)
        by_mask = store.active_by_mask(engine)
        readers = {name: 0 for name in s.sections}
        for chosen, n in by_mask.items():  # per distinct mask, not per subscriber
            for name in mask_sections(resolved_mask(chosen, s) & (DEFAULTED - 1)):
                readers[name] = readers.get(name, 0) + n
        sections = []
        for name in s.sections:
            # What a reader of this section alone gets: the send's own selection.
            shown = select_digest(edition, (name,), s).sections
            shown_ids = {a.id for block in shown for a in block.stories}
            listed = sorted((a for a in edition.articles if name in a.sections and a is not lead), key=story_order)
            sections.append({"name": name, "title": section_title(name), "readers": readers.get(name, 0),
                             "stories": [(a, a.id in shown_ids) for a in listed]})
        pulled = [] if edition.frozen else articles_published_on(engine, day, s.tz, withdrawn=True)
        ids = [a.id for a in edition.articles] + [a.id for a in pulled]
        log = list(reversed(changes(engine, ids))) if ids else []
        report, _ = self.report(day)
        return {"day": day, "frozen_at": started, "lead": lead, "sections": sections, "pulled": pulled,
                "changes": log, "everyone": sum(by_mask.values()), "per_section": s.per_section,
                "stories": len(edition.articles), "report": report}

    @signed_in
    async def edition(self, request: Request, visit: Visit) -> Response:
        day = parse_day(request.query_params.get("date"), self.site.settings.today())
        return await self.edition_page(visit, day)

    async def edition_page(self, visit: Visit, day: date, error: str = "", status: int = 200) -> Response:
        view = await run_in_threadpool(self.edition_view, day)
        return self.page("editor_edition.html.j2", visit, status, title=f"Edition of {day.isoformat()}",
                         prev_day=(day - timedelta(days=1)).isoformat(), next_day=(day + timedelta(days=1)).isoformat(),
                         today=self.site.settings.today().isoformat(), error=error, **view)

    @signed_in
    async def curate(self, request: Request, visit: Visit) -> Response:
        form = visit.form
        assert form is not None
        day = parse_day(str(form.get("date", "")), self.site.settings.today())
        action, story, section = form.get("action"), str(form.get("story", "")), str(form.get("section", ""))
        if action not in ACTIONS or not story:
            raise HTTPException(400)
        s, engine, who = self.site.settings, self.site.engine, visit.editor.email

        def change():
            if action in ("up", "down"):
                return move(engine, story, s, who, section, up=action == "up")
            verb = {"feature": feature, "withdraw": withdraw, "restore": restore}[action]
            return verb(engine, story, s, who)
        try:
            changed = await run_in_threadpool(change)
        except CurationError as e:
            return await self.edition_page(visit, day, error=str(e), status=409)
        return RedirectResponse(f"{self.root}?{urlencode({'date': changed.isoformat()})}", 303,
                                headers={"Cache-Control": "no-store"})

    # -- the quality report ---------------------------------------------------------------------

    def report(self, day: date) -> tuple[Report, Edition]:
        """digest.check's report of `day` (in a worker thread), and the edition it read.

        Computing it is cheap, but not free: it renders the edition once (MJML and premailer,
        tens of milliseconds for a day's stories) and reads each distinct digest's HTML.  The
        edition page shows its summary on every visit, so the report is kept per state of
        what it depends on: the day's stories (or the frozen copy) and the active audience
        per section mask, both read with cheap queries.  Any curation or change of audience
        is a new state, so a kept report is never stale.
        """
        s, engine = self.site.settings, self.site.engine

        def state() -> tuple[Edition, tuple]:
            edition = load_edition(engine, day, s)
            return edition, (day, edition.frozen, edition.articles, tuple(sorted(audience(engine, s).items())))
        edition, key = state()
        with self._lock:
            if key in self._reports:
                self._reports.move_to_end(key)
                return self._reports[key], edition
        found = check_edition(engine, s, day, self.preview_signer)
        edition, after = state()
        if after == key:  # nothing changed while it was computed: it is the report of this state
            with self._lock:
                self._reports[key] = found
                while len(self._reports) > REPORTS:
                    self._reports.popitem(last=False)
        return found, edition

    def findings(self, found: list[Finding], edition: Edition) -> list[dict]:
        """Each finding with what kind of place its `where` names, for the page's labels."""
        ids = {a.id for a in edition.articles}
        named = {"settings": "Settings", "edition": "Edition", "audience": "Audience"}

        def kind(where: str) -> str:
            parts = where.split(", ")
            if all(p in ids for p in parts):
                return "Story" if len(parts) == 1 else "Stories"
            if where in self.site.settings.sections:
                return "Section"
            if where.startswith(("digest of ", WHOLE_EDITION)):
                return "Digest"
            return named.get(where, "Where")
        return [{"code": f.code, "message": f.message, "where": f.where, "kind": kind(f.where)} for f in found]

    @signed_in
    async def check_page(self, request: Request, visit: Visit) -> Response:
        day = parse_day(request.query_params.get("date"), self.site.settings.today())
        report, edition = await run_in_threadpool(self.report, day)
        return self.page("editor_check.html.j2", visit, title=f"Check of {day.isoformat()}", day=day,
                         prev_day=(day - timedelta(days=1)).isoformat(), next_day=(day + timedelta(days=1)).isoformat(),
                         today=self.site.settings.today().isoformat(), report=report,
                         problems=self.findings(report.problems, edition), notes=self.findings(report.notes, edition))

    # -- preview as anyone --------------------------------------------------------------------

    def chosen(self, q) -> dict:
        """Whom to preview as, from the query (or the test-send form): a subscriber, some
        sections, or every section."""
        subscriber = q.get("subscriber", "").strip()
        sections = tuple(n for n in self.site.settings.sections if n in q.getlist("sections"))
        if subscriber:
            return {"subscriber": subscriber, "sections": ()}
        return {"subscriber": "", "sections": sections or tuple(self.site.settings.sections)}

    def previewed(self, day: date, subscriber: str, sections: tuple[str, ...]) -> Preview:
        """digest.preview's message, rendered once for the page and its two frames."""
        s, engine = self.site.settings, self.site.engine
        person = store.get(engine, email=subscriber) if subscriber else None
        key = (day, load_edition(engine, day, s).articles, subscriber.lower(), person, sections)
        with self._lock:
            if key in self._previews:
                self._previews.move_to_end(key)
                return self._previews[key]
        shown = preview(engine, s, day, self.preview_signer, subscriber=subscriber or None,
                        sections=None if subscriber else sections)
        with self._lock:
            self._previews[key] = shown
            while len(self._previews) > PREVIEWS:
                self._previews.popitem(last=False)
        return shown

    @signed_in
    async def preview_page(self, request: Request, visit: Visit) -> Response:
        day = parse_day(request.query_params.get("date"), self.site.settings.today())
        search = " ".join(request.query_params.get("q", "").split())[:320]
        return await self.preview_response(visit, day, self.chosen(request.query_params), search)

    async def preview_response(self, visit: Visit, day: date, who: dict, search: str = "", status: int = 200,
                               **test_send) -> Response:
        """The preview page; `test_send`: the outcome of the form (test_to, sent, refused)."""
        s = self.site.settings
        found = await run_in_threadpool(store.search, self.site.engine, search) if search else []
        allowed = sorted(await run_in_threadpool(allowed_test_recipients, self.site.engine, s))
        shown, error = None, ""
        try:
            shown = await run_in_threadpool(self.previewed, day, who["subscriber"], who["sections"])
        except PreviewError as e:
            error = str(e)
        query = {"date": day.isoformat()}
        query.update({"subscriber": who["subscriber"]} if who["subscriber"] else {})
        email_url = f"{self.root}/preview/email?" + urlencode(
            [*query.items(), *(("sections", n) for n in who["sections"])])
        everything = not who["subscriber"] and set(who["sections"]) == set(s.sections)
        return self.page("editor_preview.html.j2", visit, status, title=f"Preview of {day.isoformat()}", day=day,
                         prev_day=(day - timedelta(days=1)).isoformat(), next_day=(day + timedelta(days=1)).isoformat(),
                         search=search, found=found, subscriber=who["subscriber"], everything=everything,
                         **self.site.sections_ctx(() if everything else who["sections"]),
                         previewed_sections=() if who["subscriber"] or everything else who["sections"],
                         shown=shown, error=error, email_url=email_url, allowed=allowed,
                         **{"test_to": visit.editor.email, "sent": None, "refused": "", **test_send})

    @signed_in
    async def test_send(self, request: Request, visit: Visit) -> Response:
        """The previewed digest to the addresses of the form, through the send's transport."""
        form = visit.form
        assert form is not None
        s = self.site.settings
        day = parse_day(str(form.get("date", "")), s.today())
        who = self.chosen(form)
        to = str(form.get("to", ""))
        if len(to) > MAX_TEST_TO:
            return await self.preview_response(visit, day, who, status=400, test_to=to[:MAX_TEST_TO], refused=(
                f"the addresses are {len(to):,} characters long; at most {MAX_TEST_TO:,}"))

        engine = self.site.engine
        try:  # the addresses first, by send_test's own rule: a refusal is the form's fault
            addresses = await run_in_threadpool(checked_recipients, engine, s, to.split(","))
        except TestSendError as e:
            return await self.preview_response(visit, day, who, status=400, test_to=to, refused=str(e))

        def send() -> TestSend:
            return send_test(engine, s, day, self.preview_signer, addresses, subscriber=who["subscriber"] or None,
                             sections=None if who["subscriber"] else who["sections"])
        try:
            sent = await run_in_threadpool(send)
        except TestSendError as e:  # the send itself: no such digest any more, SendGrid refused or away
            return await self.preview_response(visit, day, who, status=502, test_to=to, refused=str(e))
        return await self.preview_response(visit, day, who, status=502 if sent.problems else 200, test_to=to,
                                           sent=sent)

    @signed_in
    async def preview_email(self, request: Request, visit: Visit) -> Response:
        day = parse_day(request.query_params.get("date"), self.site.settings.today())
        who = self.chosen(request.query_params)
        try:
            shown = await run_in_threadpool(self.previewed, day, who["subscriber"], who["sections"])
        except PreviewError as e:
            return self.page("message.html.j2", visit, 404, title="Nothing to preview", text=str(e), link="",
                             link_text="")
        return HTMLResponse(shown.html, headers=EMAIL_HEADERS)


def routes(site: Site) -> Routes:
    desk = Desk(site)
    r = desk.root
    return Routes([
        Route(f"{r}/sign-in", desk.sign_in, methods=["GET", "POST"]),
        Route(f"{r}/sign-out", desk.sign_out, methods=["POST"]),
        Route(r, desk.edition),
        Route(f"{r}/curate", desk.curate, methods=["POST"]),
        Route(f"{r}/preview", desk.preview_page),
        Route(f"{r}/preview/email", desk.preview_email),
        Route(f"{r}/preview/test-send", desk.test_send, methods=["POST"]),
        Route(f"{r}/check", desk.check_page),
    ], notes=[f"editors' desk at {site.settings.base_url}/editor (digest editors add makes accounts)"])
