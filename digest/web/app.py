"""The subscriber-facing web app: the audiences' routes mounted on one Starlette app, the
error pages they share, and `digest serve`'s server.

Routes live under the path of DIGEST_BASE_URL (https://news.example.com/digest ->
/digest/preferences/...), so the links in emails work without a rewriting proxy.  Pages
work without JavaScript; every failure is a friendly page, never a traceback.
"""

from __future__ import annotations

import json
import logging
import socket
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from digest import delivery_time
from digest.config import ConfigError, Settings
from digest.store import BUSY_MESSAGE, StoreError, is_busy, open_store
from digest.web import archive, editor, preferences, signup, webhooks
from digest.web.security import RedactTokens, redact
from digest.web.site import ERRORS, WEB_TEMPLATES, Routes, Site

log = logging.getLogger("uvicorn.error")

# Every audience of the app, each adding its own routes: a new one (the editors' desk,
# ...) is one more module here.
AUDIENCES: tuple[Callable[[Site], Routes], ...] = (preferences.routes, webhooks.routes, signup.routes,
                                                   archive.routes, editor.routes)


class Errors:
    """The error pages every route shares."""

    def __init__(self, site: Site):
        self.site = site

    async def http_error(self, request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 400
        title, text = ERRORS.get(code, ERRORS[400])
        return self.site.message(code, title, text)

    async def database_error(self, request: Request, exc: Exception) -> Response:
        """A busy database (a long import or a send holds SQLite's write lock) is a 503,
        not a 500: nothing was changed, and the same request works a little later."""
        if not is_busy(exc):
            raise exc  # a real failure: the server error page, and the traceback in the log
        log.warning("%s %s: %s", request.method, redact(request.url.path), BUSY_MESSAGE)
        headers = {"Retry-After": "30"}
        if request.url.path == f"{self.site.root}{webhooks.PATH}":  # SendGrid redelivers on a 5xx
            return JSONResponse({"error": BUSY_MESSAGE}, status_code=503, headers=headers)
        response = self.site.message(503, *ERRORS[503])
        response.headers.update(headers)
        return response

    async def server_error(self, request: Request, exc: Exception) -> Response:
        log.error("error on %s %s (the server logs the traceback)", request.method, redact(request.url.path))
        return self.site.message(500, *ERRORS[500])


def create_app(settings: Settings, engine: Engine | None = None) -> Starlette:
    """The ASGI app; ConfigError if it cannot run safely (no secret key, a malformed webhook key)."""
    if not settings.secret_key:
        raise ConfigError("DIGEST_SECRET_KEY is not set: the server will not sign links with a guessable key")
    if engine is None:
        try:
            engine = open_store(settings.database_url)
        except StoreError as e:
            raise ConfigError(str(e)) from None
    site = Site(settings, engine)
    css = (WEB_TEMPLATES / "style.css").read_bytes()
    # A file, not inline code, so the pages' CSP needs no 'unsafe-inline'; the zone links
    # it maps are the store's (delivery_time), written in once.
    zone_js = (WEB_TEMPLATES / "zone-suggestion.js").read_text(encoding="utf-8").replace(
        "/*LINKS*/{}", json.dumps(delivery_time.link_places(), sort_keys=True)).encode()

    async def stylesheet(request: Request) -> Response:
        return Response(css, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})

    async def zone_script(request: Request) -> Response:
        return Response(zone_js, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})

    routes: list[BaseRoute] = [Route(f"{site.root}/static/style.css", stylesheet),
                               Route(f"{site.root}/static/zone-suggestion.js", zone_script)]
    for audience in AUDIENCES:
        mounted = audience(site)
        routes += mounted.routes
        site.notes += mounted.notes

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        logging.getLogger("uvicorn.access").addFilter(RedactTokens())
        for line in site.startup_notes():
            log.info(line)
        yield

    errors = Errors(site)
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: errors.http_error, OperationalError: errors.database_error,
                                        Exception: errors.server_error})
    # Starlette answers /subscribe/ with a redirect built from the request's Host header,
    # which a client chooses: no such redirects (a trailing slash is simply not found).
    app.router.redirect_slashes = False
    app.state.site = site
    return app


def _quiet(message: str) -> None:
    """Where notes go when the caller does not want them."""


def run_server(settings: Settings, host: str, port: int, notify: Callable[[str], None] = _quiet) -> None:
    """Serve the app at `host`:`port` until stopped; ConfigError if it cannot (the port is
    taken, no secret key...).  Without DIGEST_BASE_URL, links point at this server."""
    import uvicorn

    if not settings.base_url:
        settings = settings.served_at(host, port)
        notify(f"note: DIGEST_BASE_URL is not set; links will point at {settings.base_url}")
    try:  # fail now, clearly, rather than inside uvicorn with its own exit status
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, server_header=False, log_level="info")
