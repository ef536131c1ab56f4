"""Fetching a feed URL: httpx, with a timeout, a size cap, bounded redirects, and a
conditional request (If-None-Match / If-Modified-Since) from the last good fetch.

Every failure is a FetchError whose message is one line fit to print after the URL:
the host not found, the connection refused, no answer in time, an HTTP status, too big.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import httpx

from digest.config import http_url

MAX_REDIRECTS = 5
USER_AGENT = "news-digest (feed import; +https://github.com/news-digest)"
ACCEPT = ("application/feed+json, application/json;q=0.9, application/rss+xml, application/atom+xml, "
          "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1")


class FetchError(Exception):
    """The feed could not be fetched; the message says why."""


@dataclass(frozen=True)
class Fetched:
    url: str            # where the feed was found, after any redirects
    not_modified: bool  # a 304: the feed is as it was at the last good fetch
    body: bytes = b""   # decompressed
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None


def is_url(source: str) -> bool:
    """Whether an import argument names a URL (scheme://…) rather than a file or folder."""
    scheme, sep, _ = source.partition("://")
    return bool(sep) and scheme.isascii() and scheme[:1].isalpha() and all(
        c.isalnum() or c in "+.-" for c in scheme)


def fetch(url: str, *, timeout: float, max_bytes: int, etag: str | None = None,
          last_modified: str | None = None) -> Fetched:
    """GET `url` (http or https only), following at most MAX_REDIRECTS redirects.

    `timeout` bounds the whole fetch (connecting, waiting, reading), not only each step;
    `max_bytes` bounds the body as decompressed (a small gzip can inflate to gigabytes).
    """
    parts = http_url(url)
    if parts is None:
        raise FetchError("only http(s) URLs can be imported")
    headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS,
                          headers=headers) as client, client.stream("GET", url) as response:
            if response.status_code == 304:
                return Fetched(str(response.url), True)
            if response.status_code != 200:
                raise FetchError(f"HTTP {response.status_code} {response.reason_phrase}".rstrip())
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"too big: {int(declared):,} bytes, over the {max_bytes:,}-byte cap "
                                 "([feeds] max_bytes)")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"too big: over the {max_bytes:,}-byte cap ([feeds] max_bytes)")
                if time.monotonic() > deadline:
                    raise FetchError(f"no complete answer within {timeout:g} s ([feeds] timeout)")
                chunks.append(chunk)
            return Fetched(str(response.url), False, b"".join(chunks),
                           response.headers.get("Content-Type", ""),
                           _validator(response.headers.get("ETag")),
                           _validator(response.headers.get("Last-Modified")))
    except httpx.TimeoutException:
        raise FetchError(f"no answer within {timeout:g} s ([feeds] timeout)") from None
    except httpx.TooManyRedirects:
        raise FetchError(f"more than {MAX_REDIRECTS} redirects") from None
    except httpx.UnsupportedProtocol as e:
        raise FetchError(f"redirected to a URL that is not http(s) ({e})") from None
    except httpx.ConnectError as e:
        raise FetchError(_connect_problem(e, parts.hostname or "", parts.port)) from None
    except httpx.DecodingError as e:
        raise FetchError(f"the server sent a broken compressed body ({e})") from None
    except httpx.InvalidURL as e:
        raise FetchError(f"not a valid URL ({e})") from None
    except httpx.HTTPError as e:  # a dropped connection, a protocol error: one line, never a traceback
        raise FetchError(f"the request failed ({type(e).__name__}: {e or 'no detail'})") from None


def _validator(value: str | None) -> str | None:
    """An ETag or Last-Modified worth sending back (a header of absurd length is not kept)."""
    return value if value and len(value) <= 1000 else None


def _connect_problem(e: httpx.ConnectError, host: str, port: int | None) -> str:
    """What went wrong while connecting, from the OS error under httpx's (and httpcore's)."""
    cause: BaseException | None = e
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, socket.gaierror):
        return f"cannot find the host {host!r} (DNS: {cause.strerror or cause})"
    if isinstance(cause, ConnectionRefusedError):
        return f"connection refused by {host}{f':{port}' if port else ''}"
    if "Name or service not known" in str(e) or "nodename nor servname" in str(e):
        return f"cannot find the host {host!r} (DNS: {e})"
    if "Connection refused" in str(e):
        return f"connection refused by {host}{f':{port}' if port else ''}"
    return f"cannot connect to {host}: {e}"
