"""POST /webhooks/sendgrid: real ECDSA P-256 signatures, suppressions, dedupe, reconciliation."""

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from digest.config import ConfigError
from digest.deliver import ledger
from digest.sending import active_chunks
from digest.store import webhook_events
from digest.subscribers import events, store
from digest.subscribers.events import suppression
from digest.web.webhooks import MAX_WEBHOOK_BODY, Verifier, load_public_key
from tests.conftest import freeze_and_claim_everyone
from tests.web_helpers import WebhookKey, event_body, make_site

URL = "/digest/webhooks/sendgrid"
BOUNCE = {"event": "bounce", "type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 user unknown"}


@pytest.fixture(scope="module")
def key():
    return WebhookKey()


@pytest.fixture
def site(tmp_path, key):
    return make_site(tmp_path, sendgrid_webhook_public_key=key.public_b64)


_ids = iter(range(10**6))


def event(sub, **fields) -> dict:
    return {"email": sub.email, "timestamp": int(time.time()), "sg_event_id": f"ev-{next(_ids)}",
            "sg_message_id": "abc123.filter0001.1.2", "subscriber_id": str(sub.id), **fields}


def post(site, key, *events, timestamp=None):
    body = event_body(*events)
    return site.client.post(URL, content=body, headers=key.headers(body, timestamp))


def seen(site) -> int:
    with site.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(webhook_events)).scalar_one()


# -- the signature --------------------------------------------------------------------------

def test_a_signed_hard_bounce_suppresses_the_address(site, key):
    sub = site.add("jo@example.com")
    r = post(site, key, event(sub, **BOUNCE))
    assert r.status_code == 200
    assert r.json() == {"received": 1, "suppressed": 1, "reconciled": 0, "duplicates": 0, "ignored": 0,
                        "failed": 0}
    after = site.get("jo@example.com")
    assert (after.status, after.status_reason) == ("bounced", "bounce: 550 5.1.1 user unknown")
    assert after.to_dict()["reason"] == "bounce: 550 5.1.1 user unknown"  # what `subscribers list` shows
    assert sub.id not in [row[0] for chunk in active_chunks(site.engine) for row in chunk]  # next digest skips


def refused(site, sub, body, headers, status=403):
    r = site.client.post(URL, content=body, headers=headers)
    assert r.status_code == status
    assert site.get(sub.email).status == "active" and seen(site) == 0


def test_forged_missing_garbled_or_stale_signatures_are_refused(site, key):
    sub = site.add("jo@example.com")
    body = event_body(event(sub, **BOUNCE))
    good = key.headers(body)
    sig, ts = "X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"
    refused(site, sub, body, {})                                                   # unsigned
    refused(site, sub, body, {sig: good[sig]})                                     # no timestamp
    refused(site, sub, body, {ts: good[ts]})                                       # no signature
    refused(site, sub, body, WebhookKey().headers(body))                           # another key
    refused(site, sub, body.replace(b"bounce", b"spamreport", 1), good)            # body changed
    refused(site, sub, body, {**good, ts: str(int(good[ts]) + 1)})                 # timestamp changed
    refused(site, sub, body, {**good, sig: "!!!not base64!!!"})                    # the helper would raise
    refused(site, sub, body, {**good, sig: "QUJD"})                                # base64, not a signature
    refused(site, sub, body, {**good, ts: "yesterday"})
    refused(site, sub, body, key.headers(body, timestamp=int(time.time()) - 11 * 60))  # stale
    refused(site, sub, body, key.headers(body, timestamp=int(time.time()) + 11 * 60))  # from the future
    refused(site, sub, b"\xff\xfe" + body, key.headers(b"\xff\xfe" + body))        # not UTF-8


def test_without_a_configured_key_every_request_is_refused(tmp_path, key):
    site = make_site(tmp_path)
    sub = site.add("jo@example.com")
    body = event_body(event(sub, **BOUNCE))
    refused(site, sub, body, key.headers(body), status=503)
    assert any("refuses every request" in line for line in site.client.app.state.site.startup_notes())


def test_a_signed_but_malformed_body_is_a_400(site, key):
    sub = site.add("jo@example.com")
    for body in (b"{not json", b'{"event": "bounce"}'):
        refused(site, sub, body, key.headers(body), status=400)


def test_a_non_object_element_is_skipped_not_the_whole_batch(site, key):
    sub = site.add("jo@example.com")
    body = json.dumps(["bounce", 7, event(sub, **BOUNCE)]).encode()
    r = site.client.post(URL, content=body, headers=key.headers(body))
    assert r.status_code == 200 and r.json()["suppressed"] == 1
    assert site.get("jo@example.com").status == "bounced"


def test_the_key_may_be_pasted_with_pem_lines(key):
    pem = "-----BEGIN PUBLIC KEY-----\n" + key.public_b64 + "\n-----END PUBLIC KEY-----\n"
    assert load_public_key(pem).curve.name == "secp256r1"


def test_the_verifier_alone():
    k = WebhookKey()
    body = b'[{"event":"open"}]'
    v = Verifier(k.public_b64, clock=lambda: 1_000_000)
    assert v.verify(body, k.headers(body, 1_000_000)["X-Twilio-Email-Event-Webhook-Signature"], "1000000")
    assert not v.verify(body, k.headers(body, 1_000_601)["X-Twilio-Email-Event-Webhook-Signature"], "1000601")
    assert not Verifier("").verify(body, "sig", "1000000")


# -- what each event does ---------------------------------------------------------------------------

@pytest.mark.parametrize("fields, status, reason", [
    (BOUNCE, "bounced", "bounce: 550 5.1.1 user unknown"),
    ({"event": "bounce", "reason": "550 no such user"}, "bounced", "bounce: 550 no such user"),
    ({"event": "bounce", "type": "blocked", "reason": "421 try later"}, "active", None),
    ({**BOUNCE, "bounce_classification": "Reputation"}, "active", None),
    ({**BOUNCE, "bounce_classification": "Invalid Address"}, "bounced", "bounce: 550 5.1.1 user unknown"),
    ({"event": "spamreport"}, "complained", "spam report"),
    ({"event": "unsubscribe"}, "unsubscribed", "unsubscribed through SendGrid"),
    ({"event": "group_unsubscribe", "asm_group_id": 42}, "unsubscribed", "group unsubscribe (ASM group 42)"),
    ({"event": "dropped", "reason": "Bounced Address"}, "bounced", "dropped: Bounced Address"),
    ({"event": "dropped", "reason": "Spam Reporting Address"}, "complained", "dropped: Spam Reporting Address"),
    ({"event": "dropped", "reason": "Unsubscribed Address"}, "unsubscribed", "dropped: Unsubscribed Address"),
    ({"event": "dropped", "reason": "Invalid SMTPAPI header"}, "active", None),
    ({"event": "deferred", "response": "451 busy"}, "active", None),
    ({"event": "open"}, "active", None),
    ({"event": "some_future_event"}, "active", None),
])
def test_each_event_type(site, key, fields, status, reason):
    sub = site.add("jo@example.com")
    assert post(site, key, event(sub, **fields)).status_code == 200
    after = site.get("jo@example.com")
    assert (after.status, after.status_reason or None) == (status, reason)
    assert seen(site) == 1  # ignored events are remembered too


def test_events_are_applied_once(site, key):
    sub = site.add("jo@example.com")
    bounce = event(sub, **BOUNCE)
    assert post(site, key, bounce, bounce).json()["duplicates"] == 1
    store.update(site.engine, "jo@example.com", status="active")  # they fixed their mailbox and came back
    r = post(site, key, bounce)  # SendGrid redelivers the old event
    assert r.json()["duplicates"] == 1 and site.get("jo@example.com").status == "active"


def test_a_weaker_event_never_overwrites_a_stronger_one(site, key):
    sub = site.add("jo@example.com")
    post(site, key, event(sub, event="spamreport"), event(sub, event="unsubscribe"), event(sub, **BOUNCE))
    assert site.get("jo@example.com").status == "complained"


def test_the_subscriber_is_found_by_id_else_by_address(site, key):
    jo, ann = site.add("jo@example.com"), site.add("Ann@Example.com")
    post(site, key, event(jo, event="spamreport", email="JO@example.com"))  # id, address in another case
    no_id = event(ann, event="unsubscribe")
    del no_id["subscriber_id"]
    post(site, key, no_id)
    stale_id = event(ann, event="spamreport", subscriber_id="999")  # an id that names nobody
    post(site, key, stale_id)
    assert site.get("jo@example.com").status == "complained"
    assert site.get("ann@example.com").status == "complained"
    r = post(site, key, {"event": "bounce", "email": "stranger@example.com", "sg_event_id": "x1"})
    assert r.json()["ignored"] == 1


def test_nested_custom_args_are_understood(site, key):
    sub = site.add("jo@example.com")
    e = event(sub, event="spamreport", email="")
    e["custom_args"] = {"subscriber_id": e.pop("subscriber_id")}
    post(site, key, e)
    assert site.get("jo@example.com").status == "complained"


# -- reconciling ambiguous sends --------------------------------------------------------------------------

def test_processed_turns_an_unknown_ledger_row_into_sent(site, key):
    jo, ann = site.add("jo@example.com"), site.add("ann@example.com")
    day = "2026-11-25"
    freeze_and_claim_everyone(site.engine, site.settings, day)  # the run died mid-request
    r = post(site, key, event(jo, event="processed", edition=day),
             event(ann, event="delivered", edition="2026-11-24"),  # another edition: not this row
             event(ann, event="processed"))                         # no edition: nothing to reconcile
    assert r.json()["reconciled"] == 1
    by_id = {row.subscriber_id: row for row in ledger.rows(site.engine, day)}
    assert (by_id[jo.id].status, by_id[jo.id].message_id) == ("sent", "abc123")
    assert by_id[ann.id].status == "unknown"
    assert ledger.counts(site.engine, day) == {"pending": 0, "sent": 1, "failed": 0, "unknown": 1}


def test_a_bounce_or_drop_of_an_unknown_rows_message_shows_it_was_sent(site, key):
    """SendGrid bounced or dropped the message: it had accepted the request, so the row is
    `sent` (accepted is not delivered), and the subscriber is suppressed as usual."""
    jo, ann, bo = site.add("jo@example.com"), site.add("ann@example.com"), site.add("bo@example.com")
    day = "2026-11-25"
    freeze_and_claim_everyone(site.engine, site.settings, day)
    r = post(site, key, event(jo, event="bounce", edition=day, type="bounce", reason="550 no such user"),
             event(ann, event="dropped", edition=day, reason="Bounced Address"),
             event(bo, event="deferred", edition=day))
    assert r.status_code == 200
    rows = {row.subscriber_id: row.status for row in ledger.rows(site.engine, day)}
    assert rows == {jo.id: "sent", ann.id: "sent", bo.id: "sent"}
    assert [store.get(site.engine, id=s.id).status for s in (jo, ann, bo)] == ["bounced", "bounced", "active"]
    assert r.json()["suppressed"] == 2 and r.json()["reconciled"] == 1


def test_suppression_is_a_pure_function():
    assert suppression({"event": "bounce"}) == ("bounced", "bounce")
    assert suppression({"event": "delivered"}) is None


# -- regressions from the QA review -------------------------------------------------------------------------

def test_a_key_on_another_curve_is_a_startup_error(tmp_path):
    der = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ConfigError, match="P-256"):
        load_public_key(base64.b64encode(der).decode())
    with pytest.raises(ConfigError, match="SENDGRID_WEBHOOK_PUBLIC_KEY"):
        make_site(tmp_path, sendgrid_webhook_public_key=base64.b64encode(der).decode())


def test_an_oversized_body_is_refused_before_anything_else(site, key):
    sub = site.add("jo@example.com")
    big = event_body(event(sub, **BOUNCE), {"padding": "x" * (MAX_WEBHOOK_BODY + 1)})
    r = site.client.post(URL, content=big, headers=key.headers(big))  # by its Content-Length
    assert r.status_code == 413

    def chunks():  # no Content-Length: the cap applies while reading
        yield big[:1024]
        for start in range(1024, len(big), 1 << 20):
            yield big[start:start + (1 << 20)]
    r = site.client.post(URL, content=chunks(), headers=key.headers(big))
    assert r.status_code == 413
    assert site.get("jo@example.com").status == "active" and seen(site) == 0


@pytest.mark.parametrize("odd, status", [
    ({"event": ["bounce"]}, "active"),
    ({"event": "bounce", "reason": ["550"], "status": {"a": 1}}, "bounced"),  # a bounce, its reason unusable
    ({"event": "bounce", "type": ["blocked"]}, "bounced"),
    ({"event": "bounce", "bounce_classification": {"x": 1}}, "bounced"),
    ({"event": "dropped", "reason": ["Bounced Address"]}, "active"),
    ({"event": "bounce", "email": ["jo@example.com"], "subscriber_id": None}, "active"),
    ({"event": "bounce", "email": {"a": "b"}, "subscriber_id": 2**70}, "active"),
    ({"event": "spamreport", "subscriber_id": -1, "email": None}, "active"),
    ({"event": "spamreport", "subscriber_id": "1e3", "email": None}, "active"),
    ({"event": "spamreport", "subscriber_id": [1], "email": None}, "active"),
    ({"event": "processed", "edition": "2026-11-25", "subscriber_id": 2**70}, "active"),
    ({"event": "processed", "edition": ["2026-11-25"], "subscriber_id": {"x": 1}}, "active"),
    ({"event": "processed", "edition": "2026-11-25", "sg_message_id": ["m"]}, "active"),
    ({"event": "group_unsubscribe", "asm_group_id": {"x": 1}}, "unsubscribed"),
    ({"sg_event_id": ["ev"]}, "active"),   # cannot be deduplicated: not applied
    ({"sg_event_id": "e" * 201}, "active"),
    ({"custom_args": ["not", "a", "dict"], "event": "bounce"}, "bounced"),
    # Ids beyond 32 bits name nobody (PostgreSQL's INTEGER would overflow in the query).
    ({"subscriber_id": str(2**40), "email": None}, "active"),
    ({"subscriber_id": 2**31}, "bounced"),  # found by the address instead
    ({"event": "processed", "edition": "2026-11-25", "subscriber_id": 2**31}, "active"),
    # A NUL (which PostgreSQL cannot store) or another character that is not text makes a field unusable.
    ({"reason": "550\x00 user unknown"}, "bounced"),
    ({"sg_event_id": "ev\x00nul"}, "active"),  # cannot be deduplicated: not applied
    ({"email": "jo@example.com\x00"}, "bounced"),  # found by the subscriber_id instead
    ({"event": "bounce\x00"}, "active"),
    ({"event": "processed", "edition": "2026-11-25", "sg_message_id": "m\x00.filter0001"}, "active"),
])
def test_events_with_odd_field_types_are_handled_and_the_rest_applied(site, key, odd, status):
    victim, other = site.add("jo@example.com"), site.add("ann@example.com")
    r = post(site, key, {**event(victim, **BOUNCE), **odd}, event(other, event="spamreport"))
    assert r.status_code == 200 and r.json()["failed"] == 0
    assert site.get("ann@example.com").status == "complained"  # the good event of the batch is applied
    assert site.get("jo@example.com").status == status


def test_a_subscriber_id_of_2_pow_70_names_nobody(site, key):
    sub = site.add("jo@example.com")
    r = post(site, key, event(sub, event="spamreport", subscriber_id=2**70, email="nobody@example.com"))
    assert r.status_code == 200 and r.json()["ignored"] == 1 and site.get("jo@example.com").status == "active"


def test_one_failing_event_leaves_the_others_applied_and_itself_for_redelivery(site, key, monkeypatch):
    jo, ann = site.add("jo@example.com"), site.add("ann@example.com")
    first, second = event(jo, event="spamreport"), event(ann, event="spamreport")
    real = store.change_status_from

    def flaky(conn, sid, *args):
        if sid == jo.id:
            raise OperationalError("UPDATE", {}, Exception("disk I/O error"))
        return real(conn, sid, *args)
    monkeypatch.setattr(store, "change_status_from", flaky)
    r = post(site, key, first, second)
    assert r.status_code == 500 and r.json()["failed"] == 1 and r.json()["suppressed"] == 1  # SendGrid retries
    assert (site.get("jo@example.com").status, site.get("ann@example.com").status) == ("active", "complained")
    assert seen(site) == 1  # the failed one's claim was released
    monkeypatch.setattr(store, "change_status_from", real)
    r = post(site, key, first, second)  # the redelivery
    assert r.status_code == 200 and r.json()["suppressed"] == 1 and r.json()["duplicates"] == 1
    assert site.get("jo@example.com").status == "complained"


def test_a_crash_between_marking_seen_and_applying_loses_no_suppression(site, monkeypatch):
    sub = site.add("jo@example.com")
    e = event(sub, event="spamreport")

    def killed(*args):  # the process dies after the event was marked seen, before it is applied
        raise KeyboardInterrupt
    monkeypatch.setattr(store, "change_status_from", killed)
    with pytest.raises(KeyboardInterrupt):
        events.apply_events(site.engine, [e])
    assert seen(site) == 0 and site.get("jo@example.com").status == "active"  # neither happened
    monkeypatch.undo()
    tally = events.apply_events(site.engine, [e])  # SendGrid's redelivery
    assert (tally.suppressed, tally.duplicates) == (1, 0) and site.get("jo@example.com").status == "complained"
    assert seen(site) == 1 and events.apply_events(site.engine, [e]).duplicates == 1


def test_reconciliation_needs_the_events_address_to_match(site, key):
    jo, ann = site.add("jo@example.com"), site.add("ann@example.com")
    day = "2026-11-25"
    freeze_and_claim_everyone(site.engine, site.settings, day)
    r = post(site, key, event(jo, event="processed", edition=day, email="someone.else@example.com"),
             event(ann, event="delivered", edition=day, email="ANN@Example.com"))
    assert r.json()["reconciled"] == 1
    by_id = {row.subscriber_id: row.status for row in ledger.rows(site.engine, day)}
    assert by_id == {jo.id: "unknown", ann.id: "sent"}


def test_a_busy_database_is_a_503_and_the_redelivery_applies_the_events(tmp_path, key, write_lock):
    site = make_site(tmp_path, sendgrid_webhook_public_key=key.public_b64)
    jo = site.add("jo@example.com")
    e = event(jo, event="spamreport")
    holder = write_lock()
    r = post(site, key, e)
    assert r.status_code == 503 and "database is busy" in r.json()["error"]
    assert seen(site) == 0 and site.get("jo@example.com").status == "active"
    holder.rollback()  # the import finished
    r = post(site, key, e)  # SendGrid's redelivery
    assert r.status_code == 200 and r.json()["suppressed"] == 1 and site.get("jo@example.com").status == "complained"


def test_a_body_nested_100000_deep_is_a_400(site, key):
    body = b"[" * 100_000 + b"]" * 100_000
    r = site.client.post(URL, content=body, headers=key.headers(body))
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]
