"""SendGrid's signed Event Webhook: refuse what is unsigned, stale or too large, then hand
the events to subscribers.events, which applies them (suppressions, ledger reconciliation)."""

from __future__ import annotations

import time
from typing import Callable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from digest.config import ConfigError
from digest.subscribers.events import MalformedEvents, apply_events, parse_events
from digest.web.site import Routes, Site

PATH = "/webhooks/sendgrid"  # under the site's root
MAX_SKEW = 600  # seconds: older (or future) signatures are refused, so a captured request cannot be replayed later
MAX_WEBHOOK_BODY = 5 * 1024 * 1024  # SendGrid batches stay far below this; anything larger is refused unread


class Verifier:
    """Checks `X-Twilio-Email-Event-Webhook-Signature` over the raw body and timestamp."""

    def __init__(self, public_key: str, max_skew: int = MAX_SKEW, clock: Callable[[], float] = time.time):
        self.enabled = bool(public_key)
        self.max_skew = max_skew
        self.clock = clock
        self._helper = EventWebhook()
        self._key = load_public_key(public_key) if public_key else None

    def verify(self, body: bytes, signature: str | None, timestamp: str | None) -> bool:
        if not (self._key and signature and timestamp):
            return False
        try:
            if abs(self.clock() - int(timestamp)) > self.max_skew:
                return False  # the helper never checks the timestamp itself
            # The helper wants str and raises (rather than returning False) on bad base64.
            return self._helper.verify_signature(body.decode("utf-8"), signature, timestamp, self._key)
        except (ValueError, TypeError):  # includes binascii.Error and UnicodeDecodeError
            return False


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The key as SendGrid shows it (base64 DER, no PEM lines); a bad one is a startup error."""
    body = "".join(line for line in text.strip().splitlines() if not line.startswith("-----"))
    try:
        key = EventWebhook().convert_public_key_to_ecdsa(body)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    # SendGrid signs with P-256 only; a key on another curve can never verify, so say so at startup.
    if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
        raise ConfigError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA P-256 public key "
                          "(paste the 'Verification Key' from SendGrid's signed Event Webhook settings)")
    return key


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is (or says it is) larger than `limit` bytes.

    Why stream: `request.body()` would hold a body of any size in memory before we could
    refuse it, and the signature can only be checked over the whole body.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class Webhook:
    def __init__(self, site: Site):
        self.site = site
        self.verifier = Verifier(site.settings.sendgrid_webhook_public_key)

    async def sendgrid(self, request: Request) -> Response:
        if not self.verifier.enabled:
            return JSONResponse({"error": "the event webhook is not configured"}, status_code=503)
        body = await read_capped(request, MAX_WEBHOOK_BODY)
        if body is None:
            return JSONResponse({"error": f"the body is larger than {MAX_WEBHOOK_BODY} bytes"}, status_code=413)
        headers = request.headers
        if not self.verifier.verify(body, headers.get("x-twilio-email-event-webhook-signature"),
                                    headers.get("x-twilio-email-event-webhook-timestamp")):
            return JSONResponse({"error": "missing, invalid or stale signature"}, status_code=403)
        try:
            events = parse_events(body)
        except MalformedEvents as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        tally = await run_in_threadpool(apply_events, self.site.engine, events)
        # Events that failed were released for a retry: a 5xx makes SendGrid redeliver the
        # batch, and the ones already applied then count as duplicates.
        return JSONResponse(tally.to_dict(), status_code=500 if tally.failed else 200)

    def startup_note(self) -> str:
        if self.verifier.enabled:
            return f"SendGrid event webhook at {self.site.settings.base_url}{PATH} (signatures checked)"
        return "SENDGRID_WEBHOOK_PUBLIC_KEY is not set: /webhooks/sendgrid refuses every request (503)"


def routes(site: Site) -> Routes:
    hook = Webhook(site)
    return Routes([Route(f"{site.root}{PATH}", hook.sendgrid, methods=["POST"])], notes=[hook.startup_note()])
