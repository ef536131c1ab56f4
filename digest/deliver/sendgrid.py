"""The SendGrid transport: one mail/send request per batch, through the official client.

Each recipient is a personalization with their own substitutions (the tokens of
digest.render), List-Unsubscribe header (written literally: SendGrid never substitutes
in headers) and subscriber id (custom_args, for the event webhook).  Up to
`[sendgrid] concurrency` requests are in flight at once, one per send-loop thread.

Outcomes, by what SendGrid answered:
    202                       sent (with X-Message-Id)
    429                       wait for X-RateLimit-Reset, retry
    500/502/503/504, refused  retry with capped exponential backoff and jitter
    413 (or over 30 MB)       split the batch in halves and send each (size checked before sending)
    400 and other 4xx         failed, with SendGrid's own message
    401/403                   FatalTransportError: the whole run stops
    timeout / dropped after the request left   unknown: maybe accepted, never resent here
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
import urllib.error
from datetime import datetime, timezone
from typing import Callable

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from digest.config import ConfigError, Settings
from digest.deliver.transport import Batch, FatalTransportError, Outcome, Recipient
from digest.render import Rendered

MAX_WAIT = 60.0          # never sleep longer than this for one retry
MAX_REQUEST_BYTES = 30 * 1024 * 1024  # SendGrid's limit for one mail/send body
RETRYABLE = {500, 502, 503, 504}
STOPPED_BEFORE_SENDING = "The run stopped before sending; recipients not yet sent stay pending, and a rerun continues."
NOTHING_CHANGED = "Nothing was changed."


def check_ready(settings: Settings) -> None:
    if not settings.sendgrid_api_key:
        raise ConfigError("SENDGRID_API_KEY is not set: a real send needs it "
                          "(use --dry-run to write the emails to an outbox instead)")


def display_name(name: str) -> str:
    """SendGrid breaks on ';' and ',' in recipient names; the greeting keeps the real name."""
    return " ".join(name.replace(",", " ").replace(";", " ").split())


def error_message(e: HTTPError) -> str:
    """SendGrid's own words from the error body ("HTTP Error 400" says nothing)."""
    body = e.body.decode("utf-8", "replace") if isinstance(e.body, bytes) else str(e.body or "")
    try:
        errors = json.loads(body).get("errors") or []
        parts = [f"{x.get('message')}" + (f" (field: {x['field']})" if x.get("field") else "")
                 for x in errors if isinstance(x, dict)]
        if parts:
            # One error per recipient is possible (1000 of them): keep the reason readable.
            more = f"; and {len(parts) - 3} more error(s)" if len(parts) > 3 else ""
            return "; ".join(parts[:3])[:1000] + more
    except (ValueError, AttributeError):
        pass
    return body.strip()[:500] or f"HTTP {e.status_code}"


def personalization(r: Recipient) -> dict:
    to = {"email": r.email}
    name = display_name(r.name)
    if name:
        to["name"] = name
    return {"to": [to], "substitutions": r.substitutions, "headers": r.headers, "custom_args": r.custom_args}


def request_body(settings: Settings, rendered: Rendered, batch: Batch, recipients: list[Recipient] | None = None,
                 sandbox: bool = False) -> dict:
    """The mail/send body: the digest once, then one lean personalization per recipient.

    What every recipient shares (List-Unsubscribe-Post, the edition) is sent once at the
    top level, where SendGrid applies it to every personalization.  SendGrid's 10,000-byte
    limits on substitutions and custom_args per personalization cannot be reached: a name
    is at most 200 characters (subscribers.store.clean_name) and the rest is fixed-size.
    """
    s = settings
    body: dict = {
        "personalizations": [personalization(r) for r in (batch.recipients if recipients is None else recipients)],
        "from": {"email": s.from_email, "name": display_name(s.sender_name)},
        "subject": rendered.subject,
        "content": [{"type": "text/plain", "value": rendered.text},  # SendGrid requires text/plain first
                    {"type": "text/html", "value": rendered.html}],
    }
    if batch.headers:
        body["headers"] = dict(batch.headers)
    if batch.custom_args:
        body["custom_args"] = dict(batch.custom_args)
    if s.reply_to:
        body["reply_to"] = {"email": s.reply_to}
    if s.sendgrid_categories:
        body["categories"] = list(s.sendgrid_categories)
    if s.sendgrid_asm_group_id:
        body["asm"] = {"group_id": s.sendgrid_asm_group_id}
    if sandbox:
        body["mail_settings"] = {"sandbox_mode": {"enable": True}}
    if batch.batch_id:
        body["batch_id"] = batch.batch_id
    send_at = unix_send_at(batch.send_at)
    if send_at is not None:
        body["send_at"] = send_at
    return body


def unix_send_at(due: datetime | None, now: datetime | None = None) -> int | None:
    """SendGrid's `send_at` for a row due at `due` (UTC, naive): unix seconds while it is
    ahead; None (send now) once it has passed."""
    if due is None or due <= (now or datetime.now(timezone.utc).replace(tzinfo=None)):
        return None
    return int(due.replace(tzinfo=timezone.utc).timestamp())


class SendGridTransport:
    """Thread-safe: the send loop keeps several requests in flight through one transport.

    A 429 pauses every thread until the rate limit resets (one shared `_resume_at`).
    """

    def __init__(self, settings: Settings, sandbox: bool = False, log: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.sandbox = sandbox
        self.log = log or (lambda _m: None)
        self.sleep = sleep
        self.max_attempts = settings.sendgrid_max_attempts
        self.base_delay = settings.sendgrid_retry_base_delay
        self.client = SendGridAPIClient(api_key=settings.sendgrid_api_key, host=settings.sendgrid_host)
        # python-http-client has no timeout by default: a stalled connection would hang cron forever.
        self.client.client.timeout = settings.sendgrid_timeout
        # The body is JSON-encoded here, once (its size decides a split); a Content-Type other
        # than exactly "application/json" makes python-http-client send our string as it is
        # instead of encoding the dict a second time.
        self.client.client.request_headers["Content-Type"] = "application/json; charset=utf-8"
        self._lock = threading.Lock()
        self._resume_at = 0.0  # monotonic time before which no request may leave (after a 429)

    # -- the edition's batch, and its scheduled sends ---------------------------------------

    def new_batch(self) -> str:
        """A new SendGrid batch id (POST /v3/mail/batch), for every request of one edition."""
        found = self._call("create a batch id", lambda: self.client.client.mail.batch.post())
        batch_id = found.get("batch_id") if isinstance(found, dict) else None
        if not isinstance(batch_id, str) or not batch_id:
            raise FatalTransportError(f"SendGrid answered POST /v3/mail/batch without a batch id: {found!r}", 1)
        return batch_id

    def stop_batch(self, batch_id: str, how: str) -> None:
        """Cancel or pause (`how`) the scheduled sends of `batch_id`: POST /v3/user/scheduled_sends,
        or PATCH it when the batch is cancelled or paused already."""
        body = json.dumps({"batch_id": batch_id, "status": how})
        sends = self.client.client.user.scheduled_sends
        if self.batch_status(batch_id) is None:
            self._call(f"{how} the scheduled sends", lambda: sends.post(request_body=body), NOTHING_CHANGED)
        else:
            self._call(f"{how} the scheduled sends",
                       lambda: sends._(batch_id).patch(request_body=json.dumps({"status": how})), NOTHING_CHANGED)

    def resume_batch(self, batch_id: str) -> None:
        """Take the pause off `batch_id` (DELETE /v3/user/scheduled_sends/{batch_id})."""
        self._call("resume the scheduled sends", lambda: self.client.client.user.scheduled_sends._(batch_id).delete(),
                   NOTHING_CHANGED)

    def batch_status(self, batch_id: str) -> str | None:
        """"cancel" or "pause" when SendGrid holds that for `batch_id`; None when it holds nothing."""
        try:
            found = self._call("look up the scheduled sends",
                               lambda: self.client.client.user.scheduled_sends._(batch_id).get(), NOTHING_CHANGED)
        except FatalTransportError as e:
            if "HTTP 404" in str(e):
                return None
            raise
        entries = found if isinstance(found, list) else [found] if isinstance(found, dict) else []
        statuses = [e.get("status") for e in entries if isinstance(e, dict) and e.get("batch_id") == batch_id]
        return statuses[0] if statuses else None

    def _call(self, what: str, request: Callable, then: str = STOPPED_BEFORE_SENDING):
        """One small API request (no retries: the operator reruns the command); its JSON
        answer.  `then` says, in the error, what became of the run."""
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = request()
                break
            except HTTPError as e:
                code, message = e.status_code, error_message(e)
                if code in (401, 403):
                    raise FatalTransportError(f"SendGrid refused the API key (HTTP {code}: {message}) to {what}; check "
                                              f"SENDGRID_API_KEY and that the key may send mail. {then}") from None
                if code == 429 or code in RETRYABLE:
                    last = f"HTTP {code}: {message}"
                    self._wait(attempt, last, reset=_header(e, "X-RateLimit-Reset"))
                    continue
                raise FatalTransportError(f"SendGrid refused to {what} (HTTP {code}: {message}). {then}", 1) from None
            except urllib.error.URLError as e:  # before the request left: safe to repeat
                last = f"cannot connect to {self.settings.sendgrid_host}: {e.reason}"
                self._wait(attempt, last)
            except (TimeoutError, socket.timeout, http.client.HTTPException, OSError) as e:
                raise FatalTransportError(f"no usable answer from SendGrid to {what} ({type(e).__name__}). {then}",
                                          1) from None
        else:
            raise FatalTransportError(f"SendGrid is unreachable to {what} ({last}; {self.max_attempts} attempts). "
                                      f"{then}", 1)
        body = response.body
        if not body:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

    # -- delivery ---------------------------------------------------------------------

    def deliver(self, batch: Batch) -> list[Outcome]:
        return self._send(batch, batch.recipients)

    def _send(self, batch: Batch, recipients: list[Recipient]) -> list[Outcome]:
        body = request_body(self.settings, batch.rendered, batch, recipients, self.sandbox)
        n = len(recipients)
        # The client sends json.dumps(body) (ASCII): encode it once here and hand the client
        # the bytes, so the size is known before SendGrid has to say 413.
        data = json.dumps(body)  # ASCII: len() is the byte count
        if len(data) > MAX_REQUEST_BYTES:
            if n > 1:
                return self._split(batch, recipients, "the request would exceed SendGrid's 30 MB limit")
            return [Outcome(recipients[0], "failed", reason="the message exceeds SendGrid's 30 MB request limit")]
        last = ""
        connect_failures = 0
        for attempt in range(1, self.max_attempts + 1):
            self._wait_for_rate_limit()
            try:
                response = self.client.client.mail.send.post(request_body=data)
            except HTTPError as e:
                code, message = e.status_code, error_message(e)
                if code in (401, 403):
                    raise FatalTransportError(
                        f"SendGrid refused the API key (HTTP {code}: {message}); check SENDGRID_API_KEY "
                        "and that the key may send mail. The run stopped; recipients not yet sent stay pending."
                    ) from None
                if code == 413 and n > 1:
                    return self._split(batch, recipients, "SendGrid says the request is too large")
                if code == 429:
                    last = f"HTTP 429 rate limited: {message}"
                    self._wait(attempt, last, reset=_header(e, "X-RateLimit-Reset"),
                               retry_after=_header(e, "Retry-After"), everyone=True)
                    continue
                if code in RETRYABLE:
                    last = f"HTTP {code}: {message}"
                    self._wait(attempt, last)
                    continue
                return [Outcome(r, "failed", reason=f"SendGrid rejected the request (HTTP {code}): {message}")
                        for r in recipients]
            except urllib.error.URLError as e:
                # Raised before the request left (refused, DNS, connect timeout): safe to retry.
                last = f"cannot connect to {self.settings.sendgrid_host}: {e.reason}"
                connect_failures += 1
                self._wait(attempt, last)
                continue
            except (TimeoutError, socket.timeout):
                return self._unknown(recipients, f"no answer from SendGrid within {self.settings.sendgrid_timeout:g} s "
                                                 "after the request was sent; it may have been accepted")
            except http.client.InvalidURL as e:  # a malformed host setting: nothing left
                raise FatalTransportError(f"SENDGRID_API_HOST / [sendgrid] host is not a usable URL: {e}") from None
            except (http.client.HTTPException, ConnectionError, OSError) as e:
                return self._unknown(recipients, f"the connection dropped after the request was sent "
                                                 f"({type(e).__name__}); it may have been accepted")
            if self.sandbox:
                return [Outcome(r, "sent", reason="sandbox: accepted, not delivered") for r in recipients]
            message_id = response.headers.get("X-Message-Id") if response.headers else None
            return [Outcome(r, "sent", message_id=message_id) for r in recipients]
        if connect_failures == self.max_attempts:
            # Every attempt failed before the request left: SendGrid is unreachable, and
            # each further batch would cost as long again.  Stop; these rows stay pending.
            raise FatalTransportError(
                f"SendGrid is unreachable ({last}; {self.max_attempts} attempts). The run stopped; "
                "recipients not yet sent stay pending, and a rerun continues.", exit_code=1)
        return [Outcome(r, "failed", reason=f"gave up after {self.max_attempts} attempts; last: {last}")
                for r in recipients]

    def _split(self, batch: Batch, recipients: list[Recipient], why: str) -> list[Outcome]:
        self.log(f"{why}; splitting {len(recipients)} recipients in two")
        half = len(recipients) // 2
        first = self._send(batch, recipients[:half])
        try:
            return first + self._send(batch, recipients[half:])
        except FatalTransportError as e:
            _carry(e, first)  # the first half may be sent: it must reach the ledger
            raise

    def _unknown(self, recipients, reason: str) -> list[Outcome]:
        self.log(f"unknown outcome for {len(recipients)} recipient(s): {reason}")
        return [Outcome(r, "unknown", reason=reason) for r in recipients]

    def _wait_for_rate_limit(self) -> None:
        with self._lock:
            pause = self._resume_at - time.monotonic()
        if pause > 0:
            self.sleep(pause)

    def _wait(self, attempt: int, why: str, reset: str | None = None, retry_after: str | None = None,
              everyone: bool = False) -> None:
        if attempt >= self.max_attempts:
            return
        # Capped exponential backoff with full jitter: the floor for every wait, so a stale
        # X-RateLimit-Reset (clock skew) cannot burn all attempts in a fraction of a second.
        delay = random.uniform(self.base_delay / 2, min(MAX_WAIT, self.base_delay * 2 ** (attempt - 1)))
        for value, absolute in ((reset, True), (retry_after, False)):
            try:
                at = float(value) if value else None
            except ValueError:
                at = None
            if at is not None:
                # X-RateLimit-Reset is a Unix time; a small number can only mean "seconds from now".
                told = at - time.time() if absolute and at > 1e9 else at
                delay = max(delay, told + random.uniform(0, 0.25))
                break
        delay = min(delay, MAX_WAIT)
        self.log(f"{why}; retrying in {delay:.1f} s (attempt {attempt + 1} of {self.max_attempts})")
        if everyone:  # a rate limit is the account's: no request of this run leaves before it resets
            with self._lock:  # (the next attempt's _wait_for_rate_limit does the waiting)
                self._resume_at = max(self._resume_at, time.monotonic() + delay)
        else:
            self.sleep(delay)


def _carry(e: FatalTransportError, outcomes: list[Outcome]) -> None:
    """Attach outcomes settled before a fatal error (`e.done`), so the send loop records them.

    Without this, a 413 half that SendGrid accepted before a 401 on the other half would
    be released back to pending and sent again by the next run.
    """
    e.done = list(outcomes) + list(e.done)


def _header(e: HTTPError, name: str) -> str | None:
    headers = getattr(e, "headers", None)
    if headers is None:
        return None
    try:
        return headers.get(name)
    except AttributeError:
        return None
