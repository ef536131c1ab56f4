"""A real HTTP server on 127.0.0.1 (a free port) that serves feeds to the tests, as a
news site would: with ETags and Last-Modified answered by 304, redirects, gzip, slow
answers, bodies that are too big and documents that are broken.  It counts what it saw.
"""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/xml"
    etag: str | None = None
    last_modified: str | None = None
    location: str | None = None  # a redirect's target
    gzip: bool = False
    delay: float = 0.0  # seconds before answering
    length: bool = True  # send Content-Length (else the body ends when the connection closes)


@dataclass
class Seen:
    path: str
    if_none_match: str | None
    if_modified_since: str | None
    status: int = 0


@dataclass
class FeedServer:
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def seen(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    @property
    def conditional(self) -> list[Seen]:
        return [r for r in self.requests if r.if_none_match or r.if_modified_since]


def _handler(server: FeedServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            seen = Seen(self.path, self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since"))
            server.requests.append(seen)
            route = server.routes.get(self.path)
            if route is None:
                return self._answer(seen, 404, {}, b"no such feed")
            if route.delay:
                time.sleep(route.delay)
            if route.location:
                return self._answer(seen, route.status, {"Location": route.location}, b"")
            fresh = ((route.etag and seen.if_none_match == route.etag)
                     or (route.last_modified and not seen.if_none_match
                         and seen.if_modified_since == route.last_modified))
            if fresh:
                return self._answer(seen, 304, self._validators(route), b"")
            headers = {"Content-Type": route.content_type, **self._validators(route)}
            body = route.body
            if route.gzip:
                body = gzip.compress(body)
                headers["Content-Encoding"] = "gzip"
            self._answer(seen, route.status, headers, body, length=route.length)

        @staticmethod
        def _validators(route: Route) -> dict:
            return {k: v for k, v in (("ETag", route.etag), ("Last-Modified", route.last_modified)) if v}

        def _answer(self, seen: Seen, status: int, headers: dict, body: bytes, length: bool = True) -> None:
            seen.status = status
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if length:
                self.send_header("Content-Length", str(len(body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if status != 304:
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (too big): as a real server sees it
    return Handler


def start() -> tuple[FeedServer, ThreadingHTTPServer]:
    state = FeedServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return state, httpd
