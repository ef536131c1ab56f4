"""End-to-end tests of `digest send` / `digest status` against the strict SendGrid stand-in.

Every test runs the installed `digest` in a subprocess (the `run_digest` fixture), pointed
at a FakeSendGrid on 127.0.0.1 through SENDGRID_API_HOST, and checks what each recipient
"received", what the ledger says (`digest status --json`) and the exit status.  The sample
data has 8 subscribers in 7 distinct digests (Alex follows every section and Sam has the
defaults, which are every section, so they share one request).

At the bottom, SendGridTransport is tested directly where the CLI is too coarse (backoff
caps, the 10,000-byte limits, 413 splitting).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import socket
import subprocess
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from digest.config import Settings
from digest.deliver.sendgrid import MAX_WAIT, SendGridTransport, display_name
from digest.deliver.transport import Batch, FatalTransportError, Recipient
from digest.message import list_unsubscribe_headers
from digest.render import Rendered
from tests.conftest import SAMPLE, SAMPLE_DAY, SECRET, digest_command, write_article
from tests.fake_sendgrid import FakeSendGrid
from tests.stores import copy_store, rows, store_url

DAY = SAMPLE_DAY
BASE_URL = "https://news.example.com/digest"
# One request at a time: these tests script faults request by request (the tests of
# overlapping requests set their own concurrency).
TOML = """\
postal_address = "The Daily Digest, 1 Example Street, Exampleton EX1 2MP"
list_id = "Morning Digest <digest.news.example.com>"
feedback_id = "daily:digest:news"

[sendgrid]
concurrency = 1
retry_base_delay = 0.05
categories = ["daily-digest", "test-run"]
asm_group_id = 4242
"""


def sample_emails() -> list[str]:
    with (SAMPLE / "subscribers.csv").open(encoding="utf-8") as f:
        return [row["email"].lower() for row in csv.DictReader(f)]


EMAILS = sample_emails()
ALEX, SAM, JO = "alex.reader@example.com", "sam.defaults@example.org", "jo.smith@example.com"


# -- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def sample_db(tmp_path_factory) -> Path:
    """The sample articles and subscribers imported once, through the CLI; tests copy it."""
    folder = tmp_path_factory.mktemp("sample-db")
    env = {"PATH": "/usr/bin:/bin", "DIGEST_DATABASE_URL": store_url(folder / "digest.db")}
    for args in (["articles", "import", SAMPLE / "articles"], ["subscribers", "import", SAMPLE / "subscribers.csv"]):
        done = subprocess.run([digest_command(), *map(str, args)], cwd=folder, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    return folder / "digest.db"


class Fake(FakeSendGrid):
    """FakeSendGrid that also records arrival times, and lets `pass_one()` place a
    fault-free request in the fault queue (e.g. 413, then pass, then 401)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.arrivals: list[float] = []

    def pass_one(self):
        with self._lock:
            self._faults.append((None, {}))  # "no fault" in the queue's own terms

    def _handle(self, h):
        if h.path.startswith("/v3/mail/send"):  # not the edition's POST /v3/mail/batch
            self.arrivals.append(time.time())
        super()._handle(h)


@pytest.fixture
def sg():
    with Fake() as server:
        yield server


class Site:
    """One temp working folder with the sample store, a digest.toml and the CLI pointed at `sg`."""

    def __init__(self, folder: Path, run_digest, sg: FakeSendGrid):
        self.folder, self.run_digest, self.sg = folder, run_digest, sg
        self.env = {"SENDGRID_API_HOST": sg.url, "SENDGRID_API_KEY": sg.api_key, "DIGEST_SECRET_KEY": SECRET,
                    "DIGEST_BASE_URL": BASE_URL, "SENDGRID_TIMEOUT": "5"}

    def run(self, *args, timeout=60, **env):
        """Run `digest ARGS`; env overrides (None removes a variable). Never a traceback."""
        full = {k: v for k, v in {**self.env, **env}.items() if v is not None}
        # run_digest adds its env on top of a clean one; pass every variable we want explicitly.
        result = self.run_digest(*args, env=full, timeout=timeout)
        assert "Traceback" not in result.stderr, result.stderr
        assert "Traceback" not in result.stdout, result.stdout
        return result

    def send(self, *args, **env):
        return self.run("send", "--date", DAY, "--yes", *args, **env)

    def status(self) -> dict:
        result = self.run("status", "--date", DAY, "--json")
        report = json.loads(result.stdout)
        # The README's shape ("Real send", Status), exactly, plus "withdrawn" and "in_flight" when there are any.
        assert set(report) - {"in_flight", "withdrawn"} == {"date", "counts", "problems"}
        assert report["date"] == DAY
        assert set(report["counts"]) == {"pending", "sent", "failed", "unknown"}
        for p in report["problems"]:
            assert set(p) == {"email", "status", "reason"} and p["status"] in ("failed", "unknown") and p["reason"]
        all_sent = report["counts"]["sent"] == sum(report["counts"].values())
        never_sent = not any(report["counts"].values()) and "not been sent" in result.stderr
        assert result.returncode == (0 if all_sent and not never_sent else 1)
        return report

    def popen(self, *args, **env):
        """`digest ARGS` in the background (for kill and concurrency tests)."""
        full = {k: v for k, v in {**self.env, **env}.items() if v is not None}
        full.update({"PATH": "/usr/bin:/bin", "DIGEST_DATABASE_URL": store_url(self.folder / "digest.db")})
        return subprocess.Popen([digest_command(), *map(str, args)], cwd=self.folder, env=full,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def db(self, sql: str, **params) -> list[tuple]:
        return rows(store_url(self.folder / "digest.db"), sql, **params)


@pytest.fixture
def site(tmp_path, run_digest, sample_db, sg) -> Site:
    copy_store(sample_db, tmp_path / "digest.db")
    (tmp_path / "digest.toml").write_text(TOML, encoding="utf-8")
    return Site(tmp_path, run_digest, sg)


# -- helpers --------------------------------------------------------------------------------

def received(sg: FakeSendGrid) -> Counter:
    return Counter(d["to"].lower() for d in sg.deliveries)


def assert_each_once(sg: FakeSendGrid, emails=EMAILS):
    assert received(sg) == Counter({e.lower(): 1 for e in emails})


def request_recipients(request: dict) -> list[str]:
    return [p["to"][0]["email"].lower() for p in request["body"]["personalizations"]]


def requests_to(sg: FakeSendGrid, email: str) -> list[dict]:
    return [r for r in sg.requests if email in request_recipients(r)]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


# -- the happy path -------------------------------------------------------------------------

def test_send_reaches_everyone_once_in_shared_batches_and_rerun_sends_nothing(site, sg):
    first = site.send("--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["sent"] == 8 and summary["exit_code"] == 0 and summary["problems"] == []
    assert summary["counts"] == {"pending": 0, "sent": 8, "failed": 0, "unknown": 0}
    assert first.stderr == ""  # no progress bar when stderr is not a terminal, nothing to report
    assert_each_once(sg)
    # Identical digests share one request: 8 people, 7 distinct digests.
    assert len(sg.requests) == 7 == summary["requests"]
    assert sorted(request_recipients(requests_to(sg, ALEX)[0])) == [ALEX, SAM]
    assert all(r["status"] == 202 for r in sg.requests)
    assert all(r["headers"]["Authorization"] == f"Bearer {sg.api_key}" for r in sg.requests)

    # The ledger keeps SendGrid's X-Message-Id of each recipient's request.
    ids = dict(site.db("SELECT lower(email), message_id FROM ledger WHERE edition = :day", day=DAY))
    assert ids == {d["to"].lower(): d["message_id"] for d in sg.deliveries}
    assert site.status() == {"date": DAY, "counts": {"pending": 0, "sent": 8, "failed": 0, "unknown": 0},
                             "problems": []}

    # The cron job runs again: nothing new goes out, and that is success.
    again = site.send()
    assert again.returncode == 0, again.stderr
    assert "0 sent now" in again.stdout and "8 sent" in again.stdout
    assert len(sg.requests) == 7
    assert_each_once(sg)


def test_every_recipient_gets_their_own_links_headers_and_custom_args(site, sg):
    assert site.send().returncode == 0
    ids = {e.lower(): i for i, e in site.db("SELECT id, email FROM subscribers")}
    unsubscribe_urls = set()
    for d in sg.deliveries:
        email = d["to"].lower()
        # Every per-recipient token was filled (SendGrid substituted subject and content).
        for part in ("subject", "text", "html"):
            assert "__ND_" not in d[part], (email, part)
        # Headers are literal (SendGrid never substitutes in headers): a real URL per person.
        header = d["headers"]["List-Unsubscribe"]
        assert header.startswith(f"<{BASE_URL}/unsubscribe/") and header.endswith(">")
        url = header[1:-1]
        assert url in d["text"] and url in d["html"], email
        assert d["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe_urls.add(url)
        assert d["custom_args"] == {"edition": DAY, "subscriber_id": str(ids[email])}
        assert d["categories"] == ["daily-digest", "test-run"]
        assert d["asm"] == {"group_id": 4242}
    assert len(unsubscribe_urls) == 8


def test_request_body_and_names_follow_sendgrids_rules(site, sg):
    assert site.send().returncode == 0
    for r in sg.requests:
        body = r["body"]
        assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
        assert body["categories"] == ["daily-digest", "test-run"] and body["asm"] == {"group_id": 4242}
        assert "mail_settings" not in body  # not a sandbox send
    # "Smith, Jo" gets the email: no ',' in the recipient name, the real name in the greeting.
    [jo] = sg.deliveries_to(JO)
    assert jo["name"] == "Smith Jo"
    assert "Smith, Jo" in jo["text"]
    # Per-recipient values go into HTML escaped, into text raw.
    [riley] = sg.deliveries_to("riley.bold@example.org")
    assert "Riley &lt;b&gt;Bold&lt;/b&gt; Tester" in riley["html"] and "<b>Bold</b>" not in riley["html"]
    assert "Riley <b>Bold</b> Tester" in riley["text"]


def test_sent_email_is_exactly_the_preview(site, sg):
    """What `digest preview` shows an editor is what SendGrid delivers, byte for byte."""
    assert site.send().returncode == 0
    [jo] = sg.deliveries_to(JO)
    html = site.run("preview", "--date", DAY, "--subscriber", JO, "--format", "html")
    text = site.run("preview", "--date", DAY, "--subscriber", JO, "--format", "text")
    assert html.returncode == text.returncode == 0
    assert jo["html"] == html.stdout
    assert jo["text"] == text.stdout


def test_more_than_1000_recipients_are_split_into_requests_of_at_most_1000(site, sg, tmp_path):
    people = tmp_path / "people.csv"
    emails = [f"reader{i:04d}@example.net" for i in range(1001)]
    people.write_text("email,name,sections\n" + "".join(f"{e},Reader {i},tech\n" for i, e in enumerate(emails)))
    assert site.run("subscribers", "import", people).returncode == 0

    result = site.send("--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sent"] == 1009
    assert_each_once(sg, EMAILS + emails)
    sizes = sorted(len(r["body"]["personalizations"]) for r in sg.requests)
    assert max(sizes) == 1000
    # The 1001 tech-only readers share one digest: 1000 + 1, plus the 7 sample digests.
    assert sizes.count(1000) == 1 and len(sizes) == 1 + 1 + 7


# -- reruns, frozen editions, kill-safety ---------------------------------------------------

def test_killed_run_leaves_in_flight_rows_unknown_and_rerun_sends_only_pending(site, sg):
    sg.inject("hang", seconds=30)  # the first request never answers
    proc = site.popen("send", "--date", DAY, "--yes", SENDGRID_TIMEOUT="30")
    try:
        wait_for(lambda: len(sg.requests) == 1)
    finally:
        proc.kill()  # SIGKILL: no cleanup of any kind
        assert "Traceback" not in proc.communicate()[1]
    in_flight = request_recipients(sg.requests[0])
    report = site.status()
    assert report["counts"] == {"pending": 8 - len(in_flight), "sent": 0, "failed": 0, "unknown": len(in_flight)}
    assert sorted(p["email"].lower() for p in report["problems"]) == sorted(in_flight)

    # A plain rerun sends the pending rows only; the maybe-sent ones are reported, not resent.
    rerun = site.send()
    assert rerun.returncode == 1
    assert all(e not in request_recipients(r) for r in sg.requests[1:] for e in in_flight)
    assert_each_once(sg, [e for e in EMAILS if e not in in_flight])
    assert "unknown" in rerun.stderr and in_flight[0] in rerun.stderr.lower()

    # Someone checked SendGrid's activity feed: they were not sent. Resend them explicitly.
    retry = site.send("--retry", "unknown")
    assert retry.returncode == 0, retry.stderr
    assert_each_once(sg)


def test_rerun_after_rejected_batch_sends_nothing_new_and_still_fails(site, sg):
    sg.inject("400", message="The from address does not match a verified Sender Identity.")
    first = site.send()
    assert first.returncode == 1
    failed = request_recipients(sg.requests[0])
    # SendGrid's own words, not "HTTP Error 400".
    assert "does not match a verified Sender Identity" in first.stderr
    assert "HTTP Error 400" not in first.stderr
    report = site.status()
    assert report["counts"] == {"pending": 0, "sent": 8 - len(failed), "failed": len(failed), "unknown": 0}
    assert {p["email"].lower() for p in report["problems"]} == set(failed)
    assert all("verified Sender Identity" in p["reason"] and p["status"] == "failed" for p in report["problems"])

    again = site.send()
    assert again.returncode == 1
    assert "0 sent now" in again.stdout and "failed" in again.stderr  # still says so
    assert len(sg.requests) == 7

    retry = site.send("--retry", "failed")
    assert retry.returncode == 0, retry.stderr
    assert_each_once(sg)
    assert site.status()["counts"]["sent"] == 8


def test_frozen_edition_keeps_content_and_audience_for_later_runs(site, sg, tmp_path):
    sg.inject("400", message="temporarily rejected")
    assert site.send().returncode == 1
    rejected = sg.requests[0]
    # After sending started: a new lead story and a new subscriber appear.
    write_article(tmp_path / "late", "late-breaking-story", title="Late breaking story", featured=True,
                  priority=0, published=f"{DAY}T09:00:00Z")
    assert site.run("articles", "import", tmp_path / "late").returncode == 0
    assert site.run("subscribers", "add", "late@example.com", "--sections", "world").returncode == 0

    assert site.send("--retry", "failed").returncode == 0
    retried = sg.requests[-1]
    assert retried["body"]["content"] == rejected["body"]["content"]
    assert retried["body"]["subject"] == rejected["body"]["subject"]
    assert all("Late breaking story" not in d["html"] + d["subject"] for d in sg.deliveries)
    assert sg.deliveries_to("late@example.com") == []
    assert sum(site.status()["counts"].values()) == 8


def test_subscriber_who_leaves_between_runs_is_not_sent(site, sg):
    sg.inject("401")  # the first run stops before anyone is sent
    assert site.send().returncode == 2
    assert site.run("subscribers", "unsubscribe", JO).returncode == 0
    result = site.send("--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["withdrawn"] == 1
    assert_each_once(sg, [e for e in EMAILS if e != JO])
    assert site.status()["counts"] == {"pending": 0, "sent": 7, "failed": 0, "unknown": 0}
    assert site.status()["withdrawn"] == 1  # her row is gone; the edition still counts her
    assert "1 withdrawn" in site.run("status", "--date", DAY).stdout


def test_two_runs_at_once_never_send_twice(site, sg):
    runs = [site.popen("send", "--date", DAY, "--yes") for _ in range(2)]
    for proc in runs:
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err
    assert_each_once(sg)
    assert site.status()["counts"]["sent"] == 8


def test_a_second_sender_shares_the_edition_and_never_retries_rows_in_flight(site, sg):
    """`--retry unknown` beside a live sender: the rows under its lease are left alone; the
    second run sends the rest, waits for the first, and reports the edition as it ends."""
    sg.inject("hang", seconds=60)
    first = site.popen("send", "--date", DAY, "--yes", SENDGRID_TIMEOUT="60")
    try:
        wait_for(lambda: len(sg.requests) == 1)
        hung = request_recipients(sg.requests[0])
        second = site.popen("send", "--date", DAY, "--yes", "--retry", "unknown", "--json")
        wait_for(lambda: len(sg.requests) >= 3, timeout=30)  # the other digests, by the second run
        time.sleep(0.5)
        assert second.poll() is None  # waiting for the first sender's rows in flight
        assert not any(set(hung) & set(request_recipients(r)) for r in sg.requests[1:])
        status = site.status()
        assert status["in_flight"] and status["in_flight"][0]["rows"] == len(hung)
    finally:
        first.kill()
        first.communicate()
    out, err = second.communicate(timeout=30)
    summary = json.loads(out)
    assert second.returncode == 1 and "Traceback" not in err
    assert summary["counts"]["unknown"] == len(hung) and summary["counts"]["pending"] == 0
    assert sorted(p["email"] for p in summary["problems"]) == sorted(hung)
    assert any("waited" in n for n in summary["notes"])
    # Only an explicit retry, now that the dead sender's lease is over, sends them.
    again = site.send("--retry", "unknown")
    assert again.returncode == 0, again.stderr
    assert site.status()["counts"]["sent"] == len(EMAILS)


# -- transient faults -----------------------------------------------------------------------

def test_429_waits_for_the_rate_limit_reset_then_succeeds(site, sg):
    sg.inject("429", reset_in=1)
    result = site.send()
    assert result.returncode == 0, result.stderr
    assert_each_once(sg)
    assert [r["status"] for r in sg.requests[:2]] == [429, 202]
    # The retry waited for X-RateLimit-Reset (~1 s), not the 0.05 s backoff.
    assert sg.arrivals[1] - sg.arrivals[0] >= 0.95


def test_5xx_and_429_are_absorbed_within_five_attempts(site, sg):
    for fault in ("500", "502", "503", "504"):  # the first batch succeeds on attempt 5
        sg.inject(fault)
    sg.pass_one()
    sg.inject("429", reset_in=0)                # the second batch after one rate-limit wait
    result = site.send()
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in sg.requests[:7]] == [500, 502, 503, 504, 202, 429, 202]
    assert_each_once(sg)


def test_five_503s_fail_the_batch_and_status_lists_it(site, sg):
    sg.inject("503", times=5)
    result = site.send()
    assert result.returncode == 1
    first_batch = request_recipients(sg.requests[0])
    assert len(requests_to(sg, first_batch[0])) == 5  # five attempts, then it gave up
    report = site.status()
    assert report["counts"] == {"pending": 0, "sent": 8 - len(first_batch), "failed": len(first_batch), "unknown": 0}
    assert sorted(p["email"].lower() for p in report["problems"]) == sorted(first_batch)
    assert all("503" in p["reason"] for p in report["problems"])
    assert_each_once(sg, [e for e in EMAILS if e not in first_batch])


def test_sendgrid_unreachable_stops_the_run_at_once_leaving_everyone_pending(site, sg):
    start = time.monotonic()
    result = site.send(SENDGRID_API_HOST=f"http://127.0.0.1:{closed_port()}")
    assert result.returncode == 1
    assert time.monotonic() - start < 15  # one batch's attempts, not every batch's
    assert "unreachable" in result.stderr and "5 attempts" in result.stderr and "pending" in result.stderr
    report = site.status()
    assert report["counts"] == {"pending": 8, "sent": 0, "failed": 0, "unknown": 0}

    rerun = site.send()  # SendGrid is back: a plain rerun continues
    assert rerun.returncode == 0, rerun.stderr
    assert_each_once(sg)


def last_request_fails(sg, fault: str, before: int = 6):
    """Requests go out grouped by digest in section-mask order: Alex and Sam's shared
    digest (every section, the highest mask) is the seventh and last."""
    for _ in range(before):
        sg.pass_one()
    sg.inject(fault)


def test_413_splits_the_batch(site, sg):
    last_request_fails(sg, "413")
    assert site.send().returncode == 0
    assert sg.requests[6]["status"] == 413
    shared = request_recipients(sg.requests[6])
    assert len(shared) == 2
    # The halves went separately.
    assert [request_recipients(r) for r in sg.requests[7:9]] == [[shared[0]], [shared[1]]]
    assert_each_once(sg)


# -- the API key ----------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["wrong key", "403"])
def test_refused_key_stops_the_run_at_once_and_a_good_key_then_sends(site, sg, how):
    env = {}
    if how == "wrong key":
        env["SENDGRID_API_KEY"] = "SG.revoked-key"
    else:
        sg.inject("403")
    start = time.monotonic()
    result = site.send(**env)
    assert result.returncode == 2
    assert time.monotonic() - start < 5
    assert "SENDGRID_API_KEY" in result.stderr and "API key" in result.stderr
    # A wrong key is refused at the edition's first request (POST /v3/mail/batch), before any mail/send.
    assert len(sg.requests) == (0 if how == "wrong key" else 1) and sg.deliveries == []
    assert site.status()["counts"] == {"pending": 8, "sent": 0, "failed": 0, "unknown": 0}

    good = site.send()
    assert good.returncode == 0, good.stderr
    assert_each_once(sg)


def test_refused_key_mid_split_end_to_end_never_sends_twice(site, sg):
    """413, one half accepted, then 401: the accepted half is recorded, the rest stays pending."""
    last_request_fails(sg, "413")
    sg.pass_one()
    sg.inject("401")
    assert site.send().returncode == 2
    first = next(d for d in sg.deliveries if d["to"] in (ALEX, SAM))
    assert site.status()["counts"] == {"pending": 1, "sent": 7, "failed": 0, "unknown": 0}
    assert site.send().returncode == 0
    assert_each_once(sg)
    assert first["to"] in (ALEX, SAM)


def test_host_can_come_from_digest_toml(site, sg):
    (site.folder / "digest.toml").write_text(TOML + f'host = "{sg.url}"\n', encoding="utf-8")
    result = site.send(SENDGRID_API_HOST=None)
    assert result.returncode == 0, result.stderr
    assert_each_once(sg)


@pytest.mark.parametrize("variable", ["SENDGRID_API_KEY", "DIGEST_SECRET_KEY"])
def test_missing_key_is_a_configuration_error_before_any_work(site, sg, variable):
    result = site.send(**{variable: None})
    assert result.returncode == 2
    assert variable in result.stderr
    assert sg.requests == []
    assert site.db("SELECT count(*) FROM editions") == [(0,)]


# -- unknown outcomes -----------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["hang", "drop", "accept_then_hang"])
def test_maybe_sent_batch_is_unknown_and_only_an_explicit_retry_resends(site, sg, fault):
    sg.inject(fault, seconds=3)
    start = time.monotonic()
    result = site.send(SENDGRID_TIMEOUT="1")
    assert result.returncode == 1
    assert time.monotonic() - start < 10
    batch = request_recipients(sg.requests[0])
    report = site.status()
    assert report["counts"] == {"pending": 0, "sent": 8 - len(batch), "failed": 0, "unknown": len(batch)}
    assert sorted(p["email"].lower() for p in report["problems"]) == sorted(batch)
    assert all(p["status"] == "unknown" for p in report["problems"])
    assert len(requests_to(sg, batch[0])) == 1  # not retried automatically

    again = site.send(SENDGRID_TIMEOUT="1")
    assert again.returncode == 1
    assert len(sg.requests) == 7  # a plain rerun never resends them
    delivered_once = EMAILS if fault == "accept_then_hang" else [e for e in EMAILS if e not in batch]
    assert_each_once(sg, delivered_once)

    if fault != "accept_then_hang":  # SendGrid never took these: resending is right
        retry = site.send("--retry", "unknown")
        assert retry.returncode == 0, retry.stderr
        assert_each_once(sg)
        assert site.status()["counts"]["sent"] == 8


# -- sandbox --------------------------------------------------------------------------------

def test_sandbox_validates_without_delivering_or_recording(site, sg):
    result = site.send("--sandbox", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["mode"] == "sandbox"
    assert sg.requests and all(r["body"]["mail_settings"] == {"sandbox_mode": {"enable": True}} and r["status"] == 200
                               for r in sg.requests)
    assert sg.deliveries == []
    assert site.status()["counts"] == {"pending": 0, "sent": 0, "failed": 0, "unknown": 0}
    # Nothing frozen, nothing marked: the real send afterwards reaches everyone.
    assert site.send().returncode == 0
    assert_each_once(sg)


# -- SendGridTransport directly -------------------------------------------------------------

RENDERED = Rendered(subject="Today", preheader="", html="<p>__ND_GREETING_HTML__</p>", text="__ND_GREETING_TEXT__ here")


def recipient(i: int, name: str = "", **kw) -> Recipient:
    return Recipient(subscriber_id=i, email=f"r{i}@example.com", name=name or f"Reader {i}",
                     substitutions=kw.get("substitutions", {"__ND_GREETING_HTML__": f"Hi {i}",
                                                            "__ND_GREETING_TEXT__": f"Hi {i}"}),
                     headers=list_unsubscribe_headers(f"{BASE_URL}/unsubscribe/t{i}"),
                     custom_args=kw.get("custom_args", {"edition": DAY, "subscriber_id": str(i)}), ledger_id=i)


def transport(sg, sleeps=None, **settings) -> SendGridTransport:
    settings = {"sendgrid_retry_base_delay": 0.0, "sendgrid_timeout": 2.0, **settings}
    s = Settings(sendgrid_api_key=sg.api_key, sendgrid_host=sg.url, **settings)
    return SendGridTransport(s, sleep=(sleeps.append if sleeps is not None else lambda _s: None))


def test_backoff_is_exponential_jittered_and_capped(sg):
    sleeps = []
    t = transport(sg, sleeps, sendgrid_retry_base_delay=4.0, sendgrid_max_attempts=9)
    sg.inject("503", times=9)
    [outcome] = t.deliver(Batch(RENDERED, [recipient(1)]))
    assert outcome.status == "failed" and "gave up after 9 attempts" in outcome.reason
    assert len(sg.requests) == 9 and len(sleeps) == 8  # no pointless sleep after the last attempt
    for attempt, delay in enumerate(sleeps, start=1):
        assert 2.0 <= delay <= min(MAX_WAIT, 4.0 * 2 ** (attempt - 1))
    assert max(sleeps) <= MAX_WAIT


def test_rate_limit_wait_follows_the_reset_header_and_is_capped(sg):
    sleeps = []
    t = transport(sg, sleeps)
    sg.inject("429", reset_in=5)
    sg.inject("429", reset_in=3600)
    [outcome] = t.deliver(Batch(RENDERED, [recipient(1)]))
    assert outcome.status == "sent" and outcome.message_id == sg.requests[-1]["message_id"]
    assert 3.5 <= sleeps[0] <= 6.5
    assert MAX_WAIT - 0.5 <= sleeps[1] <= MAX_WAIT


def test_a_personalization_cannot_reach_sendgrids_10000_byte_limits(settings):
    """Why the transport does not check them per recipient: the worst name stays far below."""
    from digest.deliver.sendgrid import personalization
    from digest.select import Edition
    from digest.sending import Planner
    from digest.subscribers.store import clean_name
    from digest.tokens import Signer
    worst = clean_name("&\"<>'" * 40)  # 200 characters, each escaped to up to 6 in HTML
    planner = Planner(Edition(date(2026, 11, 25), ()), settings, Signer(SECRET))
    p = personalization(planner.recipient(2**31, "x" * 64 + "@" + "d" * 180 + ".example", worst))

    def size(m):
        return sum(len(k.encode()) + len(v.encode()) for k, v in m.items())

    assert size(p["substitutions"]) < 2_000 and size({**planner.custom_args, **p["custom_args"]}) < 100


def test_413_splits_down_to_one_recipient_then_fails_with_the_message(sg):
    sg.inject("413", times=3, message="payload too large")  # 4 -> 2+2, 2 -> 1+1, 1 -> failed
    people = [recipient(i) for i in range(4)]
    outcomes = transport(sg).deliver(Batch(RENDERED, people))
    assert [o.recipient.email for o in outcomes] == [p.email for p in people]
    assert [o.status for o in outcomes] == ["failed", "sent", "sent", "sent"]
    assert "payload too large" in outcomes[0].reason
    assert received(sg) == Counter({p.email: 1 for p in people[1:]})


def test_personalizations_keep_order_and_names_lose_separators(sg):
    people = [recipient(1, "Smith, Jo"), recipient(2, "A;B"), recipient(3)]
    transport(sg).deliver(Batch(RENDERED, people))
    [request] = sg.requests
    assert request_recipients(request) == [p.email for p in people]
    assert [p["to"][0]["name"] for p in request["body"]["personalizations"]] == ["Smith Jo", "A B", "Reader 3"]
    assert display_name(" , ; ") == ""


def test_refused_key_after_a_413_half_was_sent_keeps_that_half(sg):
    """The half SendGrid already accepted must reach the ledger, or a rerun sends it twice."""
    sg.inject("413")
    sg.pass_one()      # the first half is accepted
    sg.inject("401")   # the second half: the key was revoked meanwhile
    people = [recipient(i) for i in range(2)]
    with pytest.raises(FatalTransportError) as info:
        transport(sg).deliver(Batch(RENDERED, people))
    done = getattr(info.value, "done", [])
    assert [(o.recipient.email, o.status) for o in done] == [(people[0].email, "sent")]


def test_request_over_30_mb_is_split_before_sending(sg, monkeypatch):
    from digest.deliver import sendgrid as sendgrid_module
    people = [recipient(i) for i in range(4)]
    t = transport(sg)
    # Shrink the limit so two recipients fit and four do not (a real 30 MB body is slow to build).
    two = sendgrid_module.request_body(t.settings, RENDERED, Batch(RENDERED, people[:2]))
    monkeypatch.setattr(sendgrid_module, "MAX_REQUEST_BYTES", len(json.dumps(two)))
    outcomes = t.deliver(Batch(RENDERED, people))
    assert [o.status for o in outcomes] == ["sent"] * 4
    assert [len(r["body"]["personalizations"]) for r in sg.requests] == [2, 2]  # no 413 round trip

    monkeypatch.setattr(sendgrid_module, "MAX_REQUEST_BYTES", 10)
    [alone] = t.deliver(Batch(RENDERED, people[:1]))
    assert alone.status == "failed" and "30 MB" in alone.reason
    assert len(sg.requests) == 2


def test_rate_limit_reset_given_as_seconds_from_now_is_understood(sg):
    sleeps = []
    transport(sg, sleeps)._wait(1, "rate limited", reset="3")
    assert 3.0 <= sleeps[0] <= 3.3


def test_timeout_is_set_on_the_client_and_a_silent_server_means_unknown(sg):
    sg.inject("hang", seconds=3)
    t = transport(sg, sendgrid_timeout=0.5)
    assert t.client.client.timeout == 0.5 and Settings().sendgrid_timeout == 30  # the library has none
    start = time.monotonic()
    [outcome] = t.deliver(Batch(RENDERED, [recipient(1)]))
    assert time.monotonic() - start < 2.5
    assert outcome.status == "unknown" and "may have been accepted" in outcome.reason
    assert len(sg.requests) == 1  # never retried automatically


def test_400_reason_is_sendgrids_message(sg):
    sg.inject("400", message="Does not contain a valid address.")
    [outcome] = transport(sg).deliver(Batch(RENDERED, [recipient(1)]))
    assert outcome.status == "failed"
    assert "Does not contain a valid address." in outcome.reason and "HTTP Error" not in outcome.reason


def test_400_fails_the_batch_with_a_short_reason_even_for_many_errors(sg):
    """The issue's contract: a 400 fails the batch, with SendGrid's words, kept readable."""
    people = [recipient(1), dataclasses.replace(recipient(2), email="bad@nodot"), recipient(3)]
    outcomes = transport(sg).deliver(Batch(RENDERED, people))
    assert [o.status for o in outcomes] == ["failed"] * 3 and len(sg.requests) == 1
    assert "personalizations.1" in outcomes[0].reason

    many = json.dumps({"errors": [{"message": f"bad {i}", "field": f"personalizations.{i}.to"} for i in range(1000)]})
    from python_http_client.exceptions import BadRequestsError

    from digest.deliver.sendgrid import error_message
    reason = error_message(BadRequestsError(400, "Bad Request", many.encode(), {}))
    assert reason.startswith("bad 0") and "997 more" in reason and len(reason) < 1200


def test_stale_rate_limit_reset_still_backs_off(sg):
    sleeps = []
    t = transport(sg, sleeps, sendgrid_retry_base_delay=1.0)
    t._wait(1, "rate limited", reset=str(int(time.time()) - 100))
    assert sleeps[0] >= 0.5
    t._wait(1, "rate limited", retry_after="4")
    assert 4.0 <= sleeps[1] <= 4.3


# -- several requests in flight ------------------------------------------------------------------

def test_requests_in_flight_reach_everyone_once_and_record_every_outcome(site, sg):
    (site.folder / "digest.toml").write_text(TOML.replace("concurrency = 1", "concurrency = 4"), encoding="utf-8")
    result = site.send("--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["sent"] == 8 and summary["requests"] == 7 and summary["renders"] == 1
    assert_each_once(sg)
    ids = dict(site.db("SELECT lower(email), message_id FROM ledger WHERE edition = :day", day=DAY))
    assert ids == {d["to"].lower(): d["message_id"] for d in sg.deliveries}


def test_a_refused_key_with_requests_in_flight_stops_the_run_and_leaves_the_rest_pending(site, sg):
    (site.folder / "digest.toml").write_text(TOML.replace("concurrency = 1", "concurrency = 2"), encoding="utf-8")
    result = site.send(SENDGRID_API_KEY="SG.revoked-key")
    assert result.returncode == 2 and "API key" in result.stderr
    assert sg.deliveries == []
    assert site.status()["counts"] == {"pending": 8, "sent": 0, "failed": 0, "unknown": 0}
    assert site.send().returncode == 0
    assert_each_once(sg)


def test_starting_an_old_edition_needs_yes_and_a_started_one_does_not(site, sg):
    """1 December: `send --date 2026-11-25` must not mail a week-old edition by mistake."""
    old = site.run("send", "--date", DAY)
    assert old.returncode == 2
    assert f"the edition of {DAY} is" in old.stderr and "days old" in old.stderr and "--yes" in old.stderr
    assert sg.requests == [] and site.run("status", "--date", DAY).returncode == 1  # nothing frozen
    sg.inject("401")  # the first run starts the edition, then stops
    assert site.send().returncode == 2
    retry = site.run("send", "--date", DAY)  # a started edition: no --yes needed
    assert retry.returncode == 0, retry.stderr
    assert_each_once(sg)


def test_list_id_and_feedback_id_go_once_per_request_and_the_address_in_every_footer(site, sg):
    assert site.send().returncode == 0
    for r in sg.requests:
        body = r["body"]
        assert body["headers"]["List-Id"] == "Morning Digest <digest.news.example.com>"
        assert body["headers"]["Feedback-ID"] == "daily:digest:news"
        assert all("List-Id" not in p["headers"] and "Feedback-ID" not in p["headers"]
                   for p in body["personalizations"])  # the same for everyone: not per recipient
    for d in sg.deliveries:
        assert d["headers"]["List-Id"] == "Morning Digest <digest.news.example.com>"
        assert "1 Example Street, Exampleton EX1 2MP" in d["html"] and "1 Example Street" in d["text"]


def test_a_real_send_without_a_postal_address_warns(site, sg):
    (site.folder / "digest.toml").write_text(TOML.split("\n", 1)[1], encoding="utf-8")
    r = site.send("--json")
    assert r.returncode == 0, r.stderr
    assert "warning: postal_address is not set" in r.stderr
    assert any("postal_address" in w for w in json.loads(r.stdout)["warnings"])
