"""Tests for the fake SendGrid server, driven by the official ``sendgrid`` client."""

import copy
import http.client
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
import sendgrid
from python_http_client import exceptions as sg_errors

from tests.fake_sendgrid import MAX_BODY_BYTES, FakeSendGrid


@pytest.fixture
def server():
    with FakeSendGrid() as s:
        yield s


def client_for(server, api_key=None, timeout=None):
    sg = sendgrid.SendGridAPIClient(api_key=api_key or server.api_key, host=server.url)
    # python_http_client.Client.timeout (seconds, default None = wait forever); it is
    # copied into the per-path child clients, so it must be set before `.mail.send`.
    sg.client.timeout = timeout
    return sg


def send(server, body, **kw):
    return client_for(server, **kw).client.mail.send.post(request_body=body)


def send_error(server, body, **kw):
    with pytest.raises(sg_errors.HTTPError) as info:
        send(server, body, **kw)
    return info.value


def first_error(exc):
    return exc.to_dict["errors"][0]


BASE = {
    "personalizations": [
        {"to": [{"email": "ann@example.com", "name": "Ann"}],
         "substitutions": {"[%nd:greeting%]": "Hi Ann"}},
    ],
    "from": {"email": "digest@news.example.org", "name": "News Digest"},
    "subject": "Your digest",
    "content": [
        {"type": "text/plain", "value": "[%nd:greeting%], here is your digest"},
        {"type": "text/html", "value": "<p>[%nd:greeting%]</p>"},
    ],
}


def mail(**top_level):
    body = copy.deepcopy(BASE)
    body.update(top_level)
    return body


# -- happy path ------------------------------------------------------------------------------

def test_accepted_send_records_request_and_delivery(server):
    response = send(server, mail(categories=["digest"], asm={"group_id": 42}))

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert message_id
    [request] = server.requests
    assert request["status"] == 202
    assert request["message_id"] == message_id
    assert request["body"]["subject"] == "Your digest"
    assert request["headers"]["Authorization"] == "Bearer SG.test-key"
    [delivery] = server.deliveries
    assert delivery.pop("received_at") <= time.time()
    assert delivery == {
        "to": "ann@example.com", "name": "Ann", "subject": "Your digest",
        "text": "Hi Ann, here is your digest", "html": "<p>Hi Ann</p>",
        "headers": {}, "custom_args": {}, "categories": ["digest"], "asm": {"group_id": 42},
        "from": {"email": "digest@news.example.org", "name": "News Digest"}, "message_id": message_id,
        "send_at": None, "batch_id": None,
    }


def test_message_ids_are_unique_per_request(server):
    ids = {send(server, mail()).headers["X-Message-Id"] for _ in range(3)}
    assert len(ids) == 3


def test_substitutions_apply_to_subject_content_and_custom_args_but_not_headers(server):
    body = mail(
        headers={"X-Digest": "[%nd:greeting%]"},
        custom_args={"edition": "[%nd:edition%]", "fixed": "x"},
        personalizations=[
            {"to": [{"email": "Ann@Example.com"}], "subject": "[%nd:greeting%] - today",
             "substitutions": {"[%nd:greeting%]": "Hi Ann", "[%nd:edition%]": "morning"},
             "headers": {"X-User": "[%nd:greeting%]"}, "custom_args": {"user": "[%nd:greeting%]"}},
            {"to": [{"email": "bob@example.com"}], "cc": [{"email": "carl@example.com"}],
             "substitutions": {"[%nd:greeting%]": "Yo Bob", "[%nd:edition%]": "evening"}},
        ],
    )
    assert send(server, body).status_code == 202

    [ann] = server.deliveries_to("ann@EXAMPLE.com")  # case-insensitive lookup
    assert ann["subject"] == "Hi Ann - today"  # personalization subject wins over global
    assert ann["text"] == "Hi Ann, here is your digest"
    assert ann["headers"] == {"X-Digest": "[%nd:greeting%]", "X-User": "[%nd:greeting%]"}
    assert ann["custom_args"] == {"edition": "morning", "fixed": "x", "user": "Hi Ann"}
    [bob] = server.deliveries_to("bob@example.com")
    assert bob["subject"] == "Your digest"
    assert bob["html"] == "<p>Yo Bob</p>"
    assert bob["custom_args"] == {"edition": "evening", "fixed": "x"}
    [carl] = server.deliveries_to("carl@example.com")  # cc recipients get their own record
    assert carl["html"] == "<p>Yo Bob</p>"
    assert len(server.deliveries) == 3


def test_subject_may_come_only_from_personalizations(server):
    body = mail()
    del body["subject"]
    body["personalizations"][0]["subject"] = "Per person"
    send(server, body)
    assert server.deliveries[0]["subject"] == "Per person"


def test_sandbox_mode_validates_but_delivers_nothing(server):
    response = send(server, mail(mail_settings={"sandbox_mode": {"enable": True}}))
    assert response.status_code == 200
    assert response.body == b""
    assert "X-Message-Id" not in response.headers
    assert [r["status"] for r in server.requests] == [200]
    assert server.deliveries == []

    invalid = mail(mail_settings={"sandbox_mode": {"enable": True}}, subject="")
    assert send_error(server, invalid).status_code == 400


# -- transport-level rejections --------------------------------------------------------------

def test_unknown_paths_and_methods_are_404_and_not_recorded(server):
    client = client_for(server).client
    with pytest.raises(sg_errors.NotFoundError):
        client.mail.send.get()
    with pytest.raises(sg_errors.NotFoundError):
        client.mail.settings.post(request_body={})
    assert server.requests == []


def test_wrong_or_missing_api_key_is_401(server):
    exc = send_error(server, mail(), api_key="SG.wrong")
    assert isinstance(exc, sg_errors.UnauthorizedError)
    assert first_error(exc)["message"] == "The provided authorization grant is invalid, expired, or revoked"

    request = urllib.request.Request(server.url + "/v3/mail/send", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 401
    assert server.deliveries == []


def test_non_json_content_type_is_400(server):
    client = client_for(server).client
    with pytest.raises(sg_errors.BadRequestsError) as info:
        # A non-JSON Content-Type makes the client send request_body as a raw string.
        client.mail.send.post(request_body="{}", request_headers={"Content-Type": "text/plain"})
    assert "application/json" in first_error(info.value)["message"]


def test_invalid_json_is_400(server):
    client = client_for(server).client
    with pytest.raises(sg_errors.BadRequestsError) as info:
        client.mail.send.post(request_body="{not json",
                              request_headers={"Content-Type": "application/json; charset=utf-8"})
    assert "JSON" in first_error(info.value)["message"]
    assert server.requests[0]["body"] is None


def test_body_over_30_mb_is_413(server):
    body = mail(content=[{"type": "text/plain", "value": "x" * MAX_BODY_BYTES}])
    exc = send_error(server, body)
    assert isinstance(exc, sg_errors.PayloadTooLargeError)
    assert server.requests[0]["status"] == 413
    assert server.requests[0]["body"] is None


# -- body validation -------------------------------------------------------------------------

def _set(path, value):
    """Mutator setting body[path...] = value (ints index lists); value None deletes."""
    def mutate(body):
        target = body
        for key in path[:-1]:
            target = target[key]
        if value is None:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return mutate


def _to(*emails):
    return [{"email": e} for e in emails]


def _many_personalizations(body):
    body["personalizations"] = [{"to": _to(f"u{i}@example.com")} for i in range(1001)]


def _too_many_recipients(body):
    body["personalizations"] = [{"to": _to(*[f"u{i}@example.com" for i in range(600)])},
                                {"to": _to(*[f"v{i}@example.com" for i in range(401)])}]


def _no_subject_anywhere(body):
    del body["subject"]
    body["personalizations"].append({"to": _to("bob@example.com"), "subject": "only one has it"})


P0 = ("personalizations", 0)

VALIDATION_CASES = {
    "personalizations missing": (_set(("personalizations",), None), "personalizations"),
    "personalizations empty": (_set(("personalizations",), []), "personalizations"),
    "over 1000 personalizations": (_many_personalizations, "personalizations"),
    "over 1000 recipients": (_too_many_recipients, "personalizations"),
    "to missing": (_set(P0 + ("to",), None), "personalizations.0.to"),
    "to empty": (_set(P0 + ("to",), []), "personalizations.0.to"),
    "email without @": (_set(P0 + ("to",), _to("ann.example.com")), "personalizations.0.to.0.email"),
    "email with two @": (_set(P0 + ("to",), _to("a@b@example.com")), "personalizations.0.to.0.email"),
    "email domain without dot": (_set(P0 + ("to",), _to("ann@localhost")), "personalizations.0.to.0.email"),
    "bad cc email": (_set(P0 + ("cc",), _to("nope")), "personalizations.0.cc.0.email"),
    "duplicate within personalization": (_set(P0 + ("bcc",), _to("ANN@example.com")), "personalizations.0"),
    "duplicate across personalizations (strict)": (
        _set(("personalizations",), [{"to": _to("ann@example.com")}, {"to": _to("ann@example.com")}]),
        "personalizations.1"),
    "name with semicolon": (_set(P0 + ("to", 0, "name"), "Ann; Bob"), "personalizations.0.to.0.name"),
    "name with comma": (_set(P0 + ("cc",), [{"email": "c@example.com", "name": "Doe, Jo"}]),
                        "personalizations.0.cc.0.name"),
    "from missing": (_set(("from",), None), "from"),
    "from email invalid": (_set(("from",), {"email": "digest"}), "from.email"),
    "subject missing": (_set(("subject",), None), "subject"),
    "subject empty": (_set(("subject",), ""), "subject"),
    "subject missing in one personalization": (_no_subject_anywhere, "subject"),
    "content missing": (_set(("content",), None), "content"),
    "content empty": (_set(("content",), []), "content"),
    "content value empty": (_set(("content", 1, "value"), ""), "content.1.value"),
    "html before plain": (_set(("content",), [BASE["content"][1], BASE["content"][0]]), "content"),
    "substitutions over 10000 bytes": (_set(P0 + ("substitutions",), {"k": "é" * 5000}),
                                       "personalizations.0.substitutions"),
    "substitution value not a string": (_set(P0 + ("substitutions",), {"n": 1}),
                                        "personalizations.0.substitutions.n"),
    "custom_args merged over 10000 bytes": (
        lambda b: b.update(custom_args={"a": "x" * 6000})
        or b["personalizations"][0].update(custom_args={"b": "y" * 6000}),
        "personalizations.0.custom_args"),
    "request custom_arg not a string": (_set(("custom_args",), {"n": 1}), "custom_args.n"),
    "personal custom_arg not a string": (_set(P0 + ("custom_args",), {"ok": True}),
                                         "personalizations.0.custom_args.ok"),
    "header value not a string": (_set(("headers",), {"X-Count": 3}), "headers.X-Count"),
    "reserved request header": (_set(("headers",), {"Reply-To": "x@example.com"}), "headers"),
    "reserved personalization header": (_set(P0 + ("headers",), {"X-SG-ID": "1"}),
                                        "personalizations.0.headers"),
    "11 categories": (_set(("categories",), [f"c{i}" for i in range(11)]), "categories"),
    "category over 255 chars": (_set(("categories",), ["ok", "c" * 256]), "categories.1"),
    "asm group_id not an int": (_set(("asm",), {"group_id": "42"}), "asm.group_id"),
}


@pytest.mark.parametrize("mutate, field", VALIDATION_CASES.values(), ids=VALIDATION_CASES.keys())
def test_validation_rejects_with_field(server, mutate, field):
    body = mail()
    mutate(body)
    exc = send_error(server, body)
    assert isinstance(exc, sg_errors.BadRequestsError)
    assert exc.status_code == 400
    error = first_error(exc)
    assert (error["field"], error["help"]) == (field, None)
    assert error["message"]
    assert server.requests[-1]["status"] == 400
    assert server.deliveries == []


def test_non_object_body_is_400_without_field(server):
    exc = send_error(server, ["not", "an", "object"])
    assert first_error(exc)["field"] is None


def test_limits_are_inclusive(server):
    body = mail(categories=[f"c{i}" for i in range(10)])
    body["personalizations"] = [{"to": _to(*[f"u{i}@example.com" for i in range(1000)])}]
    body["personalizations"][0]["substitutions"] = {"k": "v" * 9999}  # exactly 10000 bytes
    assert send(server, body).status_code == 202
    assert len(server.deliveries) == 1000


def test_non_strict_mode_allows_duplicates_across_personalizations(server):
    server.strict = False
    body = mail(personalizations=[{"to": _to("ann@example.com")}, {"to": _to("ann@example.com")}])
    assert send(server, body).status_code == 202
    assert len(server.deliveries_to("ann@example.com")) == 2


# -- injected faults -------------------------------------------------------------------------

def test_429_has_rate_limit_headers(server):
    server.inject("429", reset_in=3)
    before = time.time()
    exc = send_error(server, mail())
    assert isinstance(exc, sg_errors.TooManyRequestsError)
    assert exc.headers["X-RateLimit-Limit"]
    assert exc.headers["X-RateLimit-Remaining"] == "0"
    assert before + 3 <= int(exc.headers["X-RateLimit-Reset"]) <= time.time() + 4
    assert exc.to_dict == {"errors": [{"message": "too many requests", "field": None, "help": None}]}
    assert server.deliveries == []


@pytest.mark.parametrize("fault, exc_type, message", [
    ("400", sg_errors.BadRequestsError, "bad request"),
    ("401", sg_errors.UnauthorizedError, "The provided authorization grant is invalid, expired, or revoked"),
    ("403", sg_errors.ForbiddenError, "access forbidden"),
    ("413", sg_errors.PayloadTooLargeError, "payload too large"),
    ("500", sg_errors.InternalServerError, "internal server error"),
    # python_http_client has no class for 502: it raises the base HTTPError.
    ("502", sg_errors.HTTPError, "bad gateway"),
    ("503", sg_errors.ServiceUnavailableError, "service unavailable"),
    ("504", sg_errors.GatewayTimeoutError, "gateway timeout"),
])
def test_error_faults(server, fault, exc_type, message):
    server.inject(fault)
    exc = send_error(server, mail())
    assert type(exc) is exc_type
    assert exc.status_code == int(fault)
    assert first_error(exc) == {"message": message, "field": None, "help": None}
    assert server.requests[0]["fault"] == fault
    assert server.deliveries == []


def test_fault_message_override_and_fault_beats_validation(server):
    server.inject(400, message="The from address does not match a verified Sender Identity.")
    exc = send_error(server, {"garbage": True}, api_key="SG.wrong")
    assert first_error(exc)["message"].startswith("The from address")


def test_faults_are_consumed_fifo_then_normal_service_resumes(server):
    server.inject("503", times=2)
    server.inject("429")
    statuses = []
    for _ in range(4):
        try:
            statuses.append(send(server, mail()).status_code)
        except sg_errors.HTTPError as exc:
            statuses.append(exc.status_code)
    assert statuses == [503, 503, 429, 202]
    assert [r["status"] for r in server.requests] == statuses
    assert len(server.deliveries) == 1


def test_drop_closes_connection_without_response(server):
    server.inject("drop")
    with pytest.raises(http.client.RemoteDisconnected):
        send(server, mail(), timeout=5)
    assert server.requests[0]["status"] is None
    assert server.requests[0]["body"]["subject"] == "Your digest"
    assert server.deliveries == []
    assert send(server, mail()).status_code == 202


def test_hang_times_the_client_out_and_delivers_nothing(server):
    server.inject("hang", seconds=2)
    started = time.monotonic()
    with pytest.raises(TimeoutError):  # socket.timeout is an alias of TimeoutError
        send(server, mail(), timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert server.requests[0]["status"] is None
    assert server.deliveries == []


def test_accept_then_hang_records_delivery_but_client_times_out(server):
    server.inject("accept_then_hang", seconds=2)
    with pytest.raises(TimeoutError):
        send(server, mail(), timeout=0.3)
    [request] = server.requests
    assert request["status"] == 202 and request["message_id"]
    [delivery] = server.deliveries_to("ann@example.com")
    assert delivery["message_id"] == request["message_id"]


def test_stop_is_prompt_even_with_a_hanging_handler():
    server = FakeSendGrid().start()
    server.inject("hang", seconds=60)
    outcome = []

    def call():
        try:
            send(server, mail(), timeout=10)
        except Exception as exc:  # noqa: BLE001 - we only care that it ends
            outcome.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.requests, "request never reached the server"

    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1
    thread.join(timeout=2)
    assert isinstance(outcome[0], http.client.RemoteDisconnected)  # woken handler hangs up


def test_inject_rejects_unknown_faults_and_options(server):
    with pytest.raises(ValueError):
        server.inject("418")
    with pytest.raises(TypeError):
        server.inject("hang", secs=1)


def test_reset_clears_everything(server):
    send(server, mail())
    server.inject("500")
    server.reset()
    assert server.requests == [] and server.deliveries == []
    assert send(server, mail()).status_code == 202


def test_url_requires_start():
    with pytest.raises(RuntimeError):
        _ = FakeSendGrid().url


# -- counting mode (keep=False): what the benchmark's stand-in keeps ------------------------

def _post_raw(server, data: bytes, content_type="application/json"):
    """POST exact bytes (so the test knows the body size); -> (status, headers, parsed body or None)."""
    request = urllib.request.Request(f"{server.url}/v3/mail/send", data=data, method="POST", headers={
        "Authorization": f"Bearer {server.api_key}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _personalized(*emails):
    body = mail()
    body["personalizations"] = [{"to": [{"email": e}], "substitutions": {"[%nd:greeting%]": f"Hi {e}"}}
                                for e in emails]
    return body


def test_counting_mode_keeps_no_requests_but_counts_recipients_duplicates_and_bytes():
    import json
    with FakeSendGrid(keep=False) as server:
        first = json.dumps(_personalized("a@example.com", "b@example.com", "c@example.com")).encode()
        second = json.dumps(_personalized("B@example.com", "d@example.com")).encode()  # b again, other case
        third = json.dumps(_personalized("a@example.com")).encode()
        for data in (first, second, third):
            status, headers, _ = _post_raw(server, data)
            assert status == 202 and headers.get("X-Message-Id")
        # The official client goes through the same path (the stand-in's keep flag is not the client's).
        send(server, _personalized("e@example.com"))

        assert server.requests == [] and server.deliveries == []
        client_bytes = len(json.dumps(_personalized("e@example.com")))  # python-http-client's own json.dumps
        stats = server.stats()
        assert stats["requests"] == 4 and stats["accepted"] == 4
        assert stats["recipients"] == 3 + 2 + 1 + 1
        assert stats["distinct"] == 5
        assert stats["duplicates"] == 2  # a and b were each delivered twice, across requests
        assert server.received == {"a@example.com": 2, "b@example.com": 2, "c@example.com": 1,
                                   "d@example.com": 1, "e@example.com": 1}
        assert stats["body_bytes"] == len(first) + len(second) + len(third) + client_bytes
        shared = len(json.dumps({k: v for k, v in mail().items() if k != "personalizations"}))
        assert stats["personalization_bytes"] == stats["body_bytes"] - 4 * shared
        assert 0 < stats["personalization_bytes"] < stats["body_bytes"]

        # GET /__stats serves the same numbers, as JSON, from outside the process.
        with urllib.request.urlopen(f"{server.url}/__stats", timeout=5) as response:
            assert response.status == 200
            assert json.loads(response.read()) == stats
        assert server.stats() == stats  # asking for stats is not a request


def test_counting_mode_still_rejects_invalid_bodies_with_400_and_counts_no_delivery():
    import json
    with FakeSendGrid(keep=False) as server:
        bad = _personalized("not-an-address")
        status, _, payload = _post_raw(server, json.dumps(bad).encode())
        assert status == 400
        assert json.loads(payload)["errors"][0]["field"] == "personalizations.0.to.0.email"
        twice = _personalized("a@example.com", "A@example.com")  # strict: unique across the request
        assert _post_raw(server, json.dumps(twice).encode())[0] == 400
        assert _post_raw(server, b"{not json")[0] == 400
        assert _post_raw(server, json.dumps(_personalized("a@example.com")).encode(), "text/plain")[0] == 400
        no_subject = mail()
        del no_subject["subject"]
        exc = send_error(server, no_subject)
        assert exc.status_code == 400 and first_error(exc)["field"] == "subject"
        stats = server.stats()
        assert stats["requests"] == 5 and stats["accepted"] == 0
        assert stats["recipients"] == stats["body_bytes"] == stats["distinct"] == stats["duplicates"] == 0
        assert server.received == {} and server.requests == [] and server.deliveries == []
        # Faults still apply in counting mode, and a valid body afterwards is counted.
        server.inject("503")
        assert _post_raw(server, json.dumps(_personalized("a@example.com")).encode())[0] == 503
        assert _post_raw(server, json.dumps(_personalized("a@example.com")).encode())[0] == 202
        assert server.stats()["accepted"] == 1 and server.received == {"a@example.com": 1}


# -- scheduled sends: send_at, batch_id and the Cancel Scheduled Sends API ---------------------

def test_send_at_is_taken_up_to_72_hours_ahead_and_refused_beyond(server):
    now = int(time.time())
    assert send(server, mail(send_at=now + 72 * 3600 - 5)).status_code == 202
    assert server.deliveries[-1]["send_at"] == now + 72 * 3600 - 5
    error = first_error(send_error(server, mail(send_at=now + 72 * 3600 + 60)))
    assert error["field"] == "send_at" and "72 hours" in error["message"]
    body = mail()
    body["personalizations"][0]["send_at"] = now + 80 * 3600
    assert first_error(send_error(server, body))["field"] == "personalizations.0.send_at"
    assert first_error(send_error(server, mail(send_at="tomorrow")))["field"] == "send_at"


def test_a_batch_id_must_be_made_first_and_every_endpoint_answers_as_documented(server):
    client = client_for(server).client
    assert first_error(send_error(server, mail(batch_id="made-up")))["field"] == "batch_id"
    made = client.mail.batch.post()
    assert made.status_code == 201
    batch_id = json.loads(made.body)["batch_id"]
    assert json.loads(client.mail.batch._(batch_id).get().body) == {"batch_id": batch_id}
    with pytest.raises(sg_errors.BadRequestsError):
        client.mail.batch._("made-up").get()
    assert send(server, mail(batch_id=batch_id, send_at=int(time.time()) + 3600)).status_code == 202
    sends = client.user.scheduled_sends
    assert json.loads(sends._(batch_id).get().body) == []
    with pytest.raises(sg_errors.BadRequestsError):
        sends.post(request_body={"batch_id": batch_id, "status": "stop"})
    assert sends.post(request_body={"batch_id": batch_id, "status": "pause"}).status_code == 201
    assert server.inbox(at=time.time() + 7200) == []  # held
    with pytest.raises(sg_errors.BadRequestsError):  # a batch has one status: change it with PATCH
        sends.post(request_body={"batch_id": batch_id, "status": "cancel"})
    assert json.loads(sends.get().body) == [{"batch_id": batch_id, "status": "pause"}]
    assert sends._(batch_id).patch(request_body={"status": "cancel"}).status_code == 204
    assert json.loads(sends._(batch_id).get().body) == [{"batch_id": batch_id, "status": "cancel"}]
    assert sends._(batch_id).delete().status_code == 204
    with pytest.raises(sg_errors.NotFoundError):
        sends._(batch_id).delete()
    assert len(server.inbox(at=time.time() + 7200)) == 1 and server.inbox() == []  # due in an hour
    with pytest.raises(sg_errors.UnauthorizedError):
        client_for(server, api_key="SG.wrong").client.mail.batch.post()


def test_at_most_ten_batches_are_stopped_at_once(server):
    client = client_for(server).client
    ids = [json.loads(client.mail.batch.post().body)["batch_id"] for _ in range(11)]
    for batch_id in ids[:10]:
        client.user.scheduled_sends.post(request_body={"batch_id": batch_id, "status": "cancel"})
    with pytest.raises(sg_errors.BadRequestsError):
        client.user.scheduled_sends.post(request_body={"batch_id": ids[10], "status": "cancel"})
