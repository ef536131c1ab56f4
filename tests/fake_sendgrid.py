"""A strict, in-process stand-in for SendGrid's ``POST /v3/mail/send``, and the Cancel
Scheduled Sends API around it: ``POST /v3/mail/batch``, ``GET /v3/mail/batch/{id}``,
``POST|GET /v3/user/scheduled_sends``, ``GET|PATCH|DELETE /v3/user/scheduled_sends/{id}``.

End-to-end tests point the real ``sendgrid`` client at it through
``SENDGRID_API_HOST`` and then assert on what "SendGrid" would have delivered.
It is deliberately *stricter* than the real API: anything SendGrid might reject
(or silently mangle) fails loudly here, so bugs surface in tests, not in prod.

    with FakeSendGrid() as sg:
        sg.inject("429")                     # next request is rate limited
        run_cli(env={"SENDGRID_API_HOST": sg.url, "SENDGRID_API_KEY": sg.api_key})
        assert sg.deliveries_to("ann@example.com")[0]["subject"] == "Hi Ann"

Standard library only.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY_BYTES = 30 * 1024 * 1024
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_SUBSTITUTION_BYTES = 10000
MAX_CUSTOM_ARGS_BYTES = 10000
MAX_CATEGORIES = 10
MAX_CATEGORY_CHARS = 255
MAX_SEND_AT_AHEAD = 72 * 3600  # SendGrid schedules at most 72 hours ahead
MAX_STOPPED_BATCHES = 10       # "You can't pause or cancel more than 10 different batches at one time"
SCHEDULED_STATUSES = ("cancel", "pause")
RESERVED_HEADERS = frozenset({
    "x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
    "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc",
})

# Injectable faults -> (status, default error message). None = no HTTP answer at all.
FAULTS = {
    "400": (400, "bad request"),
    "401": (401, "The provided authorization grant is invalid, expired, or revoked"),
    "403": (403, "access forbidden"),
    "413": (413, "payload too large"),
    "429": (429, "too many requests"),
    "500": (500, "internal server error"),
    "502": (502, "bad gateway"),
    "503": (503, "service unavailable"),
    "504": (504, "gateway timeout"),
    "drop": (None, None),
    "hang": (None, None),
    "accept_then_hang": (None, None),
}
_FAULT_KWARGS = {"message", "reset_in", "seconds"}
RATE_LIMIT = 600  # value reported in X-RateLimit-Limit

# One "@", non-empty local part, dotted domain, no whitespace. Not RFC 5322, on purpose.
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


class _Invalid(Exception):
    """A SendGrid-style validation error: becomes one entry of the 400 ``errors`` list."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def _errors(message, field=None):
    return {"errors": [{"message": message, "field": field, "help": None}]}


def _json_type(value):
    for typ, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
                      (list, "array"), (dict, "object")):
        if isinstance(value, typ):  # bool is checked before int on purpose
            return name
    return "null"


def _expect(value, name, field):
    """Reject JSON-schema style, with SendGrid's wording."""
    if _json_type(value) != name:
        raise _Invalid(field, f"Invalid type. Expected: {name}, given: {_json_type(value)}.")


def _expect_strings(mapping, field):
    _expect(mapping, "object", field)
    for key, value in mapping.items():
        _expect(value, "string", f"{field}.{key}")


def _size(mapping):
    return sum(len(k.encode()) + len(v.encode()) for k, v in mapping.items())


def _valid_email(value):
    return isinstance(value, str) and _EMAIL_RE.fullmatch(value) is not None


def _substitute(text, substitutions):
    # SendGrid does a literal replace of each key; keys are arbitrary strings.
    for key, value in substitutions.items():
        text = text.replace(key, value)
    return text


def _check_headers(headers, field):
    _expect_strings(headers, field)
    for name in headers:
        if name.lower() in RESERVED_HEADERS:
            raise _Invalid(field, f"The header {name!r} is reserved and cannot be set. Reserved "
                                  f"headers: {', '.join(sorted(RESERVED_HEADERS))}.")


def _check_send_at(value, field, now):
    _expect(value, "integer", field)
    if value > now + MAX_SEND_AT_AHEAD:
        raise _Invalid(field, "The send_at parameter must be a unix timestamp no more than 72 hours in the future.")


def _validate(body, strict, batches=(), now=None):
    """Raise _Invalid for the first problem found, roughly in SendGrid's order."""
    now = time.time() if now is None else now
    _expect(body, "object", None)

    personalizations = body.get("personalizations")
    if personalizations is None or personalizations == []:
        raise _Invalid("personalizations", "You must have at least one personalization.")
    _expect(personalizations, "array", "personalizations")
    if len(personalizations) > MAX_PERSONALIZATIONS:
        raise _Invalid("personalizations",
                       f"The personalization block is limited to {MAX_PERSONALIZATIONS} personalizations "
                       f"per API request. You have provided {len(personalizations)} personalizations. "
                       "Please consider splitting this into multiple requests and resending your request.")

    request_args = body.get("custom_args", {})
    _expect_strings(request_args, "custom_args")
    if _size(request_args) > MAX_CUSTOM_ARGS_BYTES:
        raise _Invalid("custom_args", "The total collective size of your custom arguments may not "
                                      f"exceed {MAX_CUSTOM_ARGS_BYTES} bytes per personalization object.")

    # Strict mode: real SendGrid only requires addresses to be unique *within* one
    # personalization (to/cc/bcc). We require uniqueness across the whole request,
    # because the digest sender must never mail the same person twice in one call.
    seen_request = set()
    recipients = 0
    for i, p in enumerate(personalizations):
        field = f"personalizations.{i}"
        _expect(p, "object", field)
        if not p.get("to"):
            raise _Invalid(f"{field}.to", "The to array is required for all personalization objects, "
                                          "and must have at least one email object with a valid email address.")
        seen = seen_request if strict else set()
        for kind in ("to", "cc", "bcc"):
            entries = p.get(kind, [])
            _expect(entries, "array", f"{field}.{kind}")
            for j, recipient in enumerate(entries):
                rfield = f"{field}.{kind}.{j}"
                _expect(recipient, "object", rfield)
                email = recipient.get("email")
                if not _valid_email(email):
                    raise _Invalid(f"{rfield}.email", "Does not contain a valid address.")
                name = recipient.get("name")
                if name is not None:
                    _expect(name, "string", f"{rfield}.name")
                    # Documented by SendGrid: these split the address list and break delivery.
                    if ";" in name or "," in name:
                        raise _Invalid(f"{rfield}.name", f"The {kind} name cannot contain ';' or ','.")
                if email.lower() in seen:
                    raise _Invalid(field, "Each email address in the personalization block should be unique "
                                          "between to, cc, and bcc. We found the first duplicate instance of "
                                          f"[{email}] in the {field}.{kind} field.")
                seen.add(email.lower())
                recipients += 1
        if recipients > MAX_RECIPIENTS:
            raise _Invalid("personalizations", f"There is a limit of {MAX_RECIPIENTS} total recipients "
                                               "(to + cc + bcc) per request.")
        if "from" in p:
            _check_sender(p["from"], f"{field}.from")
        if "subject" in p:
            _expect(p["subject"], "string", f"{field}.subject")
        if "headers" in p:
            _check_headers(p["headers"], f"{field}.headers")
        if "send_at" in p:
            _check_send_at(p["send_at"], f"{field}.send_at", now)

        substitutions = p.get("substitutions", {})
        _expect_strings(substitutions, f"{field}.substitutions")
        if _size(substitutions) > MAX_SUBSTITUTION_BYTES:
            raise _Invalid(f"{field}.substitutions",
                           "The total collective size of your substitutions may not "
                           f"exceed {MAX_SUBSTITUTION_BYTES} bytes per personalization object.")
        custom_args = p.get("custom_args", {})
        _expect_strings(custom_args, f"{field}.custom_args")
        if _size({**request_args, **custom_args}) > MAX_CUSTOM_ARGS_BYTES:
            raise _Invalid(f"{field}.custom_args", "The total collective size of your custom arguments may not "
                                                   f"exceed {MAX_CUSTOM_ARGS_BYTES} bytes per personalization object.")

    _check_sender(body.get("from"), "from")
    if "reply_to" in body:
        _expect(body["reply_to"], "object", "reply_to")
        if not _valid_email(body["reply_to"].get("email")):
            raise _Invalid("reply_to.email", "The reply_to email does not contain a valid address.")

    if "subject" in body:
        _expect(body["subject"], "string", "subject")
    if not body.get("subject") and not all(p.get("subject") for p in personalizations):
        raise _Invalid("subject", "The subject is required. You can get around this requirement if you use a "
                                  "template with a subject defined or if every personalization has a subject defined.")

    content = body.get("content")
    if not content:
        raise _Invalid("content", "Unless a valid template_id is provided, the content parameter is required. "
                                  "There must be at least one defined content block.")
    _expect(content, "array", "content")
    types = []
    for i, item in enumerate(content):
        _expect(item, "object", f"content.{i}")
        if not isinstance(item.get("type"), str) or not item["type"]:
            raise _Invalid(f"content.{i}.type", "The content type must be a string at least one character in length.")
        if not isinstance(item.get("value"), str) or not item["value"]:
            raise _Invalid(f"content.{i}.value", "The content value must be a string at least one character in length.")
        types.append(item["type"].lower())
    # text/plain first (which also puts text/html after it).
    if "text/plain" in types and types[0] != "text/plain":
        raise _Invalid("content", "The content type text/plain must be first, followed by text/html, "
                                  "then any other content.")

    if "headers" in body:
        _check_headers(body["headers"], "headers")

    categories = body.get("categories", [])
    _expect(categories, "array", "categories")
    if len(categories) > MAX_CATEGORIES:
        raise _Invalid("categories", f"Too many categories: you may only have {MAX_CATEGORIES} categories per email.")
    for i, category in enumerate(categories):
        _expect(category, "string", f"categories.{i}")
        if len(category) > MAX_CATEGORY_CHARS:
            raise _Invalid(f"categories.{i}", f"A category cannot have more than {MAX_CATEGORY_CHARS} characters.")

    if "asm" in body:
        _expect(body["asm"], "object", "asm")
        _expect(body["asm"].get("group_id"), "integer", "asm.group_id")

    mail_settings = body.get("mail_settings", {})
    _expect(mail_settings, "object", "mail_settings")

    if "send_at" in body:
        _check_send_at(body["send_at"], "send_at", now)
    if "batch_id" in body:
        _expect(body["batch_id"], "string", "batch_id")
        if body["batch_id"] not in batches:
            raise _Invalid("batch_id", "The batch id is not valid: create it with POST /v3/mail/batch first.")


def _check_sender(sender, field):
    if not isinstance(sender, dict):
        raise _Invalid(field, "The from object must be provided for every email send. It is an object that "
                              "requires the email parameter, but may also contain a name parameter.")
    if not _valid_email(sender.get("email")):
        raise _Invalid(f"{field}.email", "The from email does not contain a valid address.")


def _is_sandbox(body):
    sandbox = (body.get("mail_settings") or {}).get("sandbox_mode") or {}
    return isinstance(sandbox, dict) and sandbox.get("enable") is True


def _deliveries(body, message_id):
    """Expand an accepted request into one record per recipient (to, cc and bcc)."""
    def first(content_type):
        return next((c["value"] for c in body["content"] if c["type"].lower() == content_type), "")

    text, html = first("text/plain"), first("text/html")
    out = []
    for p in body["personalizations"]:
        subs = p.get("substitutions", {})
        custom_args = {**body.get("custom_args", {}), **p.get("custom_args", {})}
        for kind in ("to", "cc", "bcc"):
            for recipient in p.get(kind, []):
                out.append({
                    "to": recipient["email"],
                    "name": recipient.get("name"),
                    "subject": _substitute(p.get("subject") or body["subject"], subs),
                    "text": _substitute(text, subs),
                    "html": _substitute(html, subs),
                    # SendGrid never substitutes inside headers.
                    "headers": {**body.get("headers", {}), **p.get("headers", {})},
                    "custom_args": {k: _substitute(v, subs) for k, v in custom_args.items()},
                    "categories": list(body.get("categories", [])),
                    "asm": dict(body["asm"]) if "asm" in body else None,
                    "from": dict(p.get("from") or body["from"]),
                    "message_id": message_id,
                    "send_at": p.get("send_at", body.get("send_at")),
                    "batch_id": body.get("batch_id"),
                    "received_at": time.time(),
                })
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True     # hanging handlers must never keep the process alive
    block_on_close = False    # ...nor make server_close() wait for them
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # clients that time out and hang up are expected here, not noise


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _dispatch(self):
        self.server.fake._handle(self)

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format, *args):
        pass


class FakeSendGrid:
    """Strict fake of SendGrid's mail/send endpoint. See the module docstring.

    ``requests`` entries: {"status", "body", "headers", "message_id", "fault"}; status is
    None when no answer was sent (drop/hang), "fault" names the injected fault or is None.
    """

    # See the uniqueness comment in _validate(); set False to mimic SendGrid exactly.
    strict = True

    def __init__(self, api_key: str = "SG.test-key", host="127.0.0.1", port=0, keep: bool = True):
        self.api_key = api_key
        self.host, self.port = host, port
        # keep=False (benchmarks): requests are validated as strictly, but instead of every
        # request and rendered delivery only counts are kept (`stats`), and per address how
        # often it was delivered, so a million recipients fit and duplicates still show.
        self.keep = keep
        self.counts = {"requests": 0, "accepted": 0, "recipients": 0, "body_bytes": 0,
                       "personalization_bytes": 0}
        self.received: dict[str, int] = {}
        self.requests: list[dict] = []
        self.deliveries: list[dict] = []
        self.batches: set[str] = set()                 # ids made by POST /v3/mail/batch
        self.scheduled_sends: dict[str, dict] = {}     # batch_id -> {"status", "at": when it was set}
        self.api_calls: list[tuple[str, str, object]] = []  # (method, path, JSON body) besides mail/send
        self._faults: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None
        self._stopping = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeSendGrid is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeSendGrid":
        if self._server is None:
            # A fresh event per run, so handlers woken by the previous stop() stay woken.
            self._stopping = threading.Event()
            self._server = _Server((self.host, self.port), _Handler)
            self._server.fake = self
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="fake-sendgrid", daemon=True)
            self._thread.start()
        return self

    def stop(self):
        if self._server is None:
            return
        self._stopping.set()  # wakes "hang" handlers, which then close their connections
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- test helpers ------------------------------------------------------------------------

    def deliveries_to(self, email) -> list[dict]:
        with self._lock:
            return [d for d in self.deliveries if d["to"].lower() == email.lower()]

    def inject(self, fault: str, times: int = 1, **kw):
        """Queue ``fault`` for the next ``times`` mail/send requests (FIFO, after earlier faults).

        kw: message (error faults), reset_in (429, seconds), seconds (hang, accept_then_hang).
        """
        fault = str(fault)  # inject(503) is as good as inject("503")
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(FAULTS)}")
        if times < 1:
            raise ValueError("times must be >= 1")
        unknown = set(kw) - _FAULT_KWARGS
        if unknown:
            raise TypeError(f"unknown fault options: {sorted(unknown)}")
        with self._lock:
            self._faults.extend([(fault, kw)] * times)

    def reset(self):
        # Clear in place: tests may hold references to these lists.
        with self._lock:
            self.requests.clear()
            self.deliveries.clear()
            self._faults.clear()
            self.api_calls.clear()

    def inbox(self, at: float | None = None) -> list[dict]:
        """The deliveries in an inbox by `at` (unix time, default now): due by then (no
        send_at, or send_at <= at), and not stopped: a cancel set before a message's
        send_at discards it; a pause holds it while the pause stands."""
        at = time.time() if at is None else at
        with self._lock:
            found = []
            for d in self.deliveries:
                due = d["send_at"] or d["received_at"]
                if due > at:
                    continue
                stop = self.scheduled_sends.get(d["batch_id"]) if d["batch_id"] else None
                if stop and stop["at"] < due:
                    continue
                found.append(d)
            return found

    # -- request handling (runs on server threads) -------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler):
        stopping = self._stopping
        raw = self._read_body(h)
        if h.command == "GET" and h.path == "/__stats":  # the benchmark's view from outside
            return self._reply(h, 200, self.stats())
        path = h.path.split("?")[0].rstrip("/")
        if path.startswith(("/v3/mail/batch", "/v3/user/scheduled_sends")):
            return self._scheduling(h, path, raw)
        if h.command != "POST" or path != "/v3/mail/send":
            return self._reply(h, 404, _errors("resource not found"))

        record = {"status": None, "body": None, "headers": dict(h.headers), "message_id": None, "fault": None}
        if self.keep:
            try:
                record["body"] = json.loads(raw) if raw is not None else None
            except ValueError:
                pass
        with self._lock:
            if self.keep:
                self.requests.append(record)
            self.counts["requests"] += 1
            fault, kw = self._faults.pop(0) if self._faults else (None, {})
        record["fault"] = fault

        if fault in ("drop", "hang"):
            if fault == "hang":
                stopping.wait(kw.get("seconds", 5))
            h.close_connection = True  # returning without a word closes the socket
            return
        if fault and fault != "accept_then_hang":
            status, headers, payload = self._fault_response(fault, kw)
            record["status"] = status
            return self._reply(h, status, payload, headers)

        status, headers, payload, deliveries = self._process(h, raw)
        with self._lock:
            record["status"] = status
            record["message_id"] = dict(headers).get("X-Message-Id")
            self.deliveries.extend(deliveries)
        if fault == "accept_then_hang":
            # SendGrid took it (deliveries recorded above), but the answer never arrives.
            stopping.wait(kw.get("seconds", 5))
            h.close_connection = True
            return
        self._reply(h, status, payload, headers)

    @staticmethod
    def _read_body(h):
        """Return the body bytes, or None if it is over the 30 MB limit.

        An oversized body is still drained: answering 413 before the client has finished
        writing would reset the connection and the client would never see the 413.
        """
        try:
            remaining = max(int(h.headers.get("Content-Length") or 0), 0)
        except ValueError:
            remaining = 0
        if remaining <= MAX_BODY_BYTES:
            return h.rfile.read(remaining)
        while remaining > 0:
            chunk = h.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)
        return None

    def _scheduling(self, h, path, raw):
        """The batch and scheduled-send endpoints, as SendGrid documents them."""
        if h.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._reply(h, 401, _errors(FAULTS["401"][1]))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return self._reply(h, 400, _errors("The request body must be valid JSON."))
        parts = path.split("/")[2:]  # ["mail", "batch", id?] or ["user", "scheduled_sends", id?]
        key = parts[2] if len(parts) > 2 else None
        with self._lock:
            self.api_calls.append((h.command, path, body))
            if parts[:2] == ["mail", "batch"]:
                if h.command == "POST" and key is None:
                    batch_id = secrets.token_urlsafe(24)
                    self.batches.add(batch_id)
                    return self._reply(h, 201, {"batch_id": batch_id})
                if h.command == "GET" and key is not None:
                    if key not in self.batches:
                        return self._reply(h, 400, _errors("invalid batch id", "batch_id"))
                    return self._reply(h, 200, {"batch_id": key})
                return self._reply(h, 404, _errors("resource not found"))
            stops = self.scheduled_sends
            if key is None and h.command == "GET":
                return self._reply(h, 200, [{"batch_id": b, "status": v["status"]} for b, v in stops.items()])
            if key is None and h.command == "POST":
                if not isinstance(body, dict) or body.get("batch_id") not in self.batches:
                    return self._reply(h, 400, _errors("batch id is not valid", "batch_id"))
                if body.get("status") not in SCHEDULED_STATUSES:
                    return self._reply(h, 400, _errors("status must be either cancel or pause", "status"))
                if body["batch_id"] in stops:
                    return self._reply(h, 400, _errors("batch already has a scheduled send status", "batch_id"))
                if len(stops) >= MAX_STOPPED_BATCHES:
                    return self._reply(h, 400, _errors("max limit reached", None))
                stops[body["batch_id"]] = {"status": body["status"], "at": time.time()}
                return self._reply(h, 201, {"batch_id": body["batch_id"], "status": body["status"]})
            if key is not None and h.command == "GET":
                return self._reply(h, 200, [{"batch_id": key, "status": stops[key]["status"]}] if key in stops else [])
            if key is not None and h.command == "PATCH":
                if key not in stops:
                    return self._reply(h, 404, _errors("batch id not found", "batch_id"))
                if not isinstance(body, dict) or body.get("status") not in SCHEDULED_STATUSES:
                    return self._reply(h, 400, _errors("status must be either cancel or pause", "status"))
                stops[key] = {"status": body["status"], "at": time.time()}
                return self._reply(h, 204)
            if key is not None and h.command == "DELETE":
                if key not in stops:
                    return self._reply(h, 404, _errors("batch id not found", "batch_id"))
                del stops[key]
                return self._reply(h, 204)
        return self._reply(h, 404, _errors("resource not found"))

    def _process(self, h, raw):
        """The normal, fault-free path: -> (status, headers, payload, deliveries)."""
        if h.headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, [], _errors(FAULTS["401"][1]), []
        if raw is None:
            return 413, [], _errors("payload too large"), []
        content_type = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return 400, [], _errors("Content-Type should be application/json."), []
        try:
            body = json.loads(raw)
        except ValueError:  # includes UnicodeDecodeError
            return 400, [], _errors("The request body must be valid JSON."), []
        try:
            with self._lock:
                batches = set(self.batches)
            _validate(body, self.strict, batches)
        except _Invalid as e:
            return 400, [], _errors(e.message, e.field), []
        if _is_sandbox(body):
            return 200, [], None, []
        message_id = secrets.token_urlsafe(16)  # same shape as SendGrid's 22-char ids
        if not self.keep:
            self._count(body, len(raw))
            return 202, [("X-Message-Id", message_id)], None, []
        return 202, [("X-Message-Id", message_id)], None, _deliveries(body, message_id)

    def _count(self, body: dict, size: int) -> None:
        rest = len(json.dumps({k: v for k, v in body.items() if k != "personalizations"}))
        emails = [r["email"].lower() for p in body["personalizations"] for r in p.get("to", [])]
        with self._lock:
            c = self.counts
            c["accepted"] += 1
            c["recipients"] += len(emails)
            c["body_bytes"] += size
            c["personalization_bytes"] += size - rest
            for e in emails:
                self.received[e] = self.received.get(e, 0) + 1

    def stats(self) -> dict:
        with self._lock:
            twice = sum(1 for n in self.received.values() if n > 1)
            return {**self.counts, "distinct": len(self.received), "duplicates": twice}

    @staticmethod
    def _fault_response(fault, kw):
        status, default_message = FAULTS[fault]
        headers = []
        if fault == "429":
            reset = math.ceil(time.time() + kw.get("reset_in", 1))
            headers = [("X-RateLimit-Limit", str(RATE_LIMIT)), ("X-RateLimit-Remaining", "0"),
                       ("X-RateLimit-Reset", str(reset))]
        return status, headers, _errors(kw.get("message", default_message))

    @staticmethod
    def _reply(h, status, payload=None, headers=()):
        data = b"" if payload is None else json.dumps(payload).encode()
        h.send_response(status)
        if payload is not None:
            h.send_header("Content-Type", "application/json")
        for name, value in headers:
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(data)))
        # One request per connection: no idle keep-alive threads to outlive stop().
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(data)
        h.close_connection = True


def main(argv=None) -> None:
    """Run the stand-in as its own process (the benchmark's SendGrid): prints its URL, serves
    until killed.  python -m tests.fake_sendgrid [--port N] [--count-only]"""
    import argparse
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="SG.bench-key")
    parser.add_argument("--count-only", action="store_true", help="keep counts, not every request")
    args = parser.parse_args(argv)
    server = FakeSendGrid(api_key=args.api_key, port=args.port, keep=not args.count_only).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
