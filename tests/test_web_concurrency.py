"""`digest serve` under concurrent load, on either engine: several real serve processes
(the installed command) on one store, real HTTP from many threads, a real `digest send`
at the same time against the SendGrid stand-in.

What must hold: every answer is a 200 (on SQLite a busy database may answer 503 with
Retry-After, which the clients here retry; on PostgreSQL never); each webhook event is
applied exactly once however many processes receive it at once; no write is lost (each
subscriber's final sections and status are what was last written for them, and a weaker
suppression never replaces a stronger one); nobody who left before their chunk was
claimed is mailed, and the ledger says exactly who was.

Every load loop has a fixed count, every request and every wait a timeout; all traffic
goes to 127.0.0.1.
"""

from __future__ import annotations

import csv
import json
import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from digest.tokens import Signer
from tests import stores
from tests.conftest import SAMPLE, SAMPLE_DAY, SECRET, digest_command
from tests.fake_sendgrid import FakeSendGrid
from tests.stores import rows, store_url
from tests.web_helpers import ServeProcess, WebhookKey, event_body, hidden

DAY = SAMPLE_DAY
BASE_URL = "https://news.example.com/digest"  # behind a load balancer: one public URL for every process
HOOK = "/digest/webhooks/sendgrid"
SERVERS = 3
REQUEST_TIMEOUT = 30   # seconds, for any one request
BUSY_RETRIES = 5       # SQLite only: a 503 (busy, Retry-After) is sent again at most this often
LOAD_TIMEOUT = 60      # seconds, for all the threads of one burst together
SQLITE = not stores.POSTGRES
SECTION_CHOICES = (["world"], ["tech", "science"], ["sports"], ["business", "world"], ["food"], ["gaming", "tech"])


@pytest.fixture(scope="module")
def key():
    return WebhookKey()


# -- the processes ------------------------------------------------------------------------------

def clean_env(url: str, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "SENDGRID_"))}
    env.update(DIGEST_DATABASE_URL=url, DIGEST_SECRET_KEY=SECRET, DIGEST_BASE_URL=BASE_URL, **extra)
    return env


class Cluster:
    """SERVERS `digest serve` processes on one store, as behind a load balancer."""

    def __init__(self, folder: Path, url: str, key: WebhookKey, count: int = SERVERS):
        env = clean_env(url, SENDGRID_WEBHOOK_PUBLIC_KEY=key.public_b64)
        self.servers = [ServeProcess(folder, env, name=f"serve{i}") for i in range(count)]

    def __enter__(self) -> Cluster:
        try:
            for s in self.servers:  # all starting at once: their migration checks race too
                s.start()
            for s in self.servers:
                s.wait_ready("/digest/subscribe")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

    def assert_quiet_logs(self) -> None:
        """No traceback and no error line in any process's output."""
        for s in self.servers:
            out = s.output()
            bad = [line for line in out.splitlines() if "Traceback" in line or "ERROR" in line]
            assert not bad, f"{s.log.name} has errors:\n" + "\n".join(bad[:20]) + f"\n--- full log ---\n{out[-5000:]}"


class Traffic:
    """Requests to the cluster from many threads; every answer is kept for the checks."""

    def __init__(self, cluster: Cluster):
        self.servers = cluster.servers
        self.answers: list[tuple[str, int, str | None]] = []  # (what, status, Retry-After)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._clients: list[httpx.Client] = []

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=REQUEST_TIMEOUT)
            with self._lock:
                self._clients.append(client)
        return client

    def request(self, method: str, n: int, path: str, what: str, **kw) -> httpx.Response:
        """`method path` at server n (mod the count); on SQLite a busy 503 is retried (bounded)."""
        url = self.servers[n % len(self.servers)].url + path
        for _ in range(BUSY_RETRIES):
            r = self._client().request(method, url, **kw)
            with self._lock:
                self.answers.append((what, r.status_code, r.headers.get("retry-after")))
            if not (SQLITE and r.status_code == 503):
                break
            time.sleep(0.2)
        return r

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def busy(self) -> int:
        return sum(1 for _, status, _ in self.answers if status == 503)

    def assert_all_ok(self, expected: int | None = None) -> None:
        """Every answer a 200; on SQLite a 503 only with Retry-After (the busy lock), and only
        if the same request then got through; never a 500."""
        allowed = {200, 503} if SQLITE else {200}
        bad = Counter((what, status) for what, status, retry in self.answers
                      if status not in allowed or (status == 503 and retry != "30"))
        assert not bad, f"unexpected answers (what, status): {dict(bad)}; all: {Counter(s for _, s, _ in self.answers)}"
        if expected is not None:
            assert sum(1 for _, s, _ in self.answers if s == 200) == expected, Counter(s for _, s, _ in self.answers)


def run_all(jobs) -> None:
    """Run every callable in `jobs` at once, each on its own thread; re-raise the first failure."""
    jobs = list(jobs)
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
        deadline = time.monotonic() + LOAD_TIMEOUT
        for f in futures:
            f.result(timeout=max(0.1, deadline - time.monotonic()))


def import_people(folder: Path, url: str, people: list[tuple[str, list[str]]]) -> dict[str, int]:
    """`digest subscribers import` of (email, sections); their ids by address."""
    path = folder / "people.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["email", "name", "sections"])
        for email, sections in people:
            w.writerow([email, "", ";".join(sections)])
    done = subprocess_run(folder, url, "subscribers", "import", str(path))
    assert done.returncode == 0, done.stderr
    return {email: sid for sid, email in rows(url, "SELECT id, email FROM subscribers")}


def subprocess_run(folder: Path, url: str, *args, timeout=120, **env):
    import subprocess
    return subprocess.run([digest_command(), *map(str, args)], cwd=folder, env=clean_env(url, **env),
                          capture_output=True, text=True, timeout=timeout)


def people_state(url: str) -> dict[str, tuple[str, int]]:
    return {email: (status, mask) for email, status, mask in
            rows(url, "SELECT email, status, section_mask FROM subscribers")}


def mask_of(sections) -> int:
    from digest.config import section_mask
    return section_mask(sections)


def checked_status(html: str) -> str:
    found = re.search(r'name="status" value="([a-z]+)" checked', html)
    assert found, "no delivery option is checked on the page"
    return found.group(1)


def one_click(traffic: Traffic, n: int, token: str) -> httpx.Response:
    # RFC 8058: what a mailbox provider's server posts, no cookies, no form token.
    return traffic.request("POST", n, f"/digest/unsubscribe/{token}", "one-click",
                           content=b"List-Unsubscribe=One-Click",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})


def webhook(traffic: Traffic, key: WebhookKey, n: int, events: list[dict]) -> httpx.Response:
    body = event_body(*events)
    return traffic.request("POST", n, HOOK, "webhook", content=body, headers=key.headers(body))


def sg_event(email: str, sid: int, eid: str, **fields) -> dict:
    return {"email": email, "timestamp": int(time.time()), "sg_event_id": eid, "subscriber_id": str(sid),
            "sg_message_id": "msg-1.filter0001.1.2", **fields}


BOUNCE = {"event": "bounce", "type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 user unknown"}


def freeze_everyone_in_flight(url: str) -> None:
    """Freeze DAY for every active subscriber and leave each row `unknown`, claimed by a
    sender whose lease ran out (as a run that died mid-request leaves them)."""
    from dataclasses import replace

    from digest.config import load_settings
    from digest.store import open_store
    from tests.conftest import freeze_and_claim_everyone
    engine = open_store(url)
    try:
        freeze_and_claim_everyone(engine, replace(load_settings(env={}), database_url=url, secret_key=SECRET,
                                                  base_url=BASE_URL), DAY)
    finally:
        engine.dispose()


class GatedSendGrid(FakeSendGrid):
    """The stand-in, holding its first mail/send request until `gate` is set (or LOAD_TIMEOUT).

    With `concurrency = 1` the sender claims its next chunk only when this request returns,
    so while it is held exactly one chunk is claimed: the people in it, and nobody else,
    may be mailed even if they leave meanwhile.
    """

    def __init__(self):
        super().__init__()
        self.held, self.gate = threading.Event(), threading.Event()
        self._first, self._first_lock = True, threading.Lock()

    def _handle(self, h):
        with self._first_lock:
            first, self._first = self._first and h.command == "POST", self._first and h.command != "POST"
        if first:
            self.held.set()
            self.gate.wait(LOAD_TIMEOUT)
        super()._handle(h)


# -- the webhook across processes ------------------------------------------------------------------

def test_each_webhook_event_is_applied_once_across_serve_processes(tmp_path, key):
    """The same signed batches at every process at once, from several threads, three times over.

    Bounces and spam reports of the same 50 people arrive in two batches processed side by
    side, so each person's two events are applied at the same moment in different
    processes: the spam report is the stronger and must win whichever commits last.
    """
    url = store_url(tmp_path / "digest.db")
    emails = [f"hook{i:03}@example.com" for i in range(100)]
    ids = import_people(tmp_path, url, [(e, []) for e in emails])
    freeze_everyone_in_flight(url)
    bounced, left, delivered = emails[:50], emails[50:74], emails[74:]
    bounces = [sg_event(e, ids[e], f"b-{e}", **BOUNCE) for e in bounced]
    spam = [sg_event(e, ids[e], f"s-{e}", event="spamreport") for e in bounced]
    unsubs = [sg_event(e, ids[e], f"u-{e}", event="unsubscribe") for e in left]
    dones = [sg_event(e, ids[e], f"d-{e}", event="delivered", edition=DAY) for e in delivered]
    batches = [bounces + unsubs[:12] + dones[:13], spam + unsubs[12:] + dones[13:]]
    distinct = len({ev["sg_event_id"] for batch in batches for ev in batch})
    assert distinct == 150 and len(batches[0]) == len(batches[1]) == 75
    rounds, per_server = 3, 2

    with Cluster(tmp_path, url, key) as cluster:
        traffic = Traffic(cluster)
        tallies, lock = [], threading.Lock()

        def poster(batch, n):
            def post():
                for _ in range(rounds):
                    r = webhook(traffic, key, n, batch)
                    if r.status_code == 200:
                        with lock:
                            tallies.append(r.json())
            return post
        try:
            run_all(poster(batch, n) for batch in batches for n in range(SERVERS) for _ in range(per_server))
        finally:
            traffic.close()
        posts = len(batches) * SERVERS * per_server * rounds
        traffic.assert_all_ok()
        cluster.assert_quiet_logs()

    total = Counter()
    for t in tallies:
        total.update(t)
    assert total["failed"] == 0, total
    applied = total["suppressed"] + total["reconciled"] + total["ignored"]
    if not traffic.busy():  # a 503 mid-batch (SQLite) applied part of it uncounted: the store says the rest
        assert len(tallies) == posts
        assert applied == distinct, f"events applied {applied} times, {distinct} distinct: {total}"
        assert total["duplicates"] == posts * 75 - distinct
        assert total["reconciled"] == len(delivered) and total["suppressed"] >= len(bounced) + len(left), total
    assert applied <= distinct, total

    seen = sorted(r[0] for r in rows(url, "SELECT sg_event_id FROM webhook_events"))
    assert seen == sorted(ev["sg_event_id"] for batch in batches for ev in batch)
    state = people_state(url)
    assert {e: state[e][0] for e in bounced} == {e: "complained" for e in bounced}  # stronger event kept
    assert {e: state[e][0] for e in left} == {e: "unsubscribed" for e in left}
    assert {e: state[e][0] for e in delivered} == {e: "active" for e in delivered}
    ledger = dict(rows(url, "SELECT email, status FROM ledger WHERE edition = :d", d=DAY))
    assert {e: ledger[e] for e in delivered} == {e: "sent" for e in delivered}
    assert {e for e, s in ledger.items() if s == "sent"} == set(delivered)  # the rest still unknown


def test_a_one_click_unsubscribe_racing_a_bounce_keeps_the_bounce(tmp_path, key):
    """For each person, a bounce (webhook) and a one-click unsubscribe reach two different
    processes at the same moment: the bounce says more and must stay, whichever lands last."""
    url = store_url(tmp_path / "digest.db")
    emails = [f"race{i:02}@example.com" for i in range(60)]
    ids = import_people(tmp_path, url, [(e, []) for e in emails])
    signer = Signer(SECRET)
    start = threading.Barrier(2, timeout=REQUEST_TIMEOUT)

    with Cluster(tmp_path, url, key) as cluster:
        traffic = Traffic(cluster)

        def bounces():
            for i, e in enumerate(emails):
                start.wait()
                webhook(traffic, key, i, [sg_event(e, ids[e], f"race-b-{e}", **BOUNCE)])

        def unsubscribes():
            for i, e in enumerate(emails):
                start.wait()
                one_click(traffic, i + 1, signer.manage_token(ids[e], e))
        try:
            run_all([bounces, unsubscribes])
        finally:
            traffic.close()
        traffic.assert_all_ok()
        cluster.assert_quiet_logs()

    state = people_state(url)
    kept = {e: state[e][0] for e in emails}
    assert kept == {e: "bounced" for e in emails}, Counter(kept.values())


def test_preferences_unsubscribes_and_bounces_under_load_while_a_send_runs(tmp_path, key):
    """60 people in 6 digests; a real `digest send` holds its first chunk in flight while
    threads change everyone's sections (page, then save as a browser would, delivery radio
    included, three times each, alternating processes), a third unsubscribe by one click
    (twice: providers repeat) and a third bounce (each event delivered to two processes).
    Then the send finishes.  A page shown before someone left and saved after must not
    bring them back."""
    url = store_url(tmp_path / "digest.db")
    (tmp_path / "digest.toml").write_text("[sendgrid]\nconcurrency = 1\n", encoding="utf-8")
    done = subprocess_run(tmp_path, url, "articles", "import", SAMPLE / "articles")
    assert done.returncode == 0, done.stderr
    emails = [f"load{i:02}@example.com" for i in range(60)]
    ids = import_people(tmp_path, url, [(e, SECTION_CHOICES[i % 6]) for i, e in enumerate(emails)])
    index = {e: i for i, e in enumerate(emails)}
    rounds = 3
    final_sections = {e: SECTION_CHOICES[(i + rounds) % 6] for i, e in enumerate(emails)}
    unsubscribing, bouncing = set(emails[0::3]), set(emails[1::3])  # the rest stay
    signer = Signer(SECRET)
    token = {e: signer.manage_token(ids[e], e) for e in emails}

    with GatedSendGrid() as sg, Cluster(tmp_path, url, key) as cluster:
        traffic = Traffic(cluster)
        saves = Counter()

        def preferences(share):
            def run():
                for e in share:
                    i = index[e]
                    for r in range(1, rounds + 1):  # one thread per person: the last save is known
                        page = traffic.request("GET", i + r, f"/digest/preferences/{token[e]}", "preferences page")
                        if page.status_code != 200:
                            continue  # counted in traffic.answers, and fails the test there
                        # As a browser posts the form: its hidden fields, the delivery radio as shown.
                        form = {"csrf": hidden(page.text, "csrf"), "form": "preferences",
                                "shown": hidden(page.text, "shown"), "status": checked_status(page.text),
                                "sections": SECTION_CHOICES[(i + r) % 6]}
                        saved = traffic.request("POST", i + r + 1, f"/digest/preferences/{token[e]}", "save",
                                                data=form)
                        if saved.status_code == 200:
                            assert "Saved" in saved.text, saved.text[:2000]
                            saves[e] += 1
            return run

        def unsubscribes(share):
            def run():
                for e in share:
                    for n in (index[e], index[e] + 1):
                        one_click(traffic, n, token[e])
            return run

        def bounces(share):
            def run():
                for e in share:
                    ev = sg_event(e, ids[e], f"load-b-{e}", **BOUNCE)
                    for n in (index[e], index[e] + 2):
                        webhook(traffic, key, n, [ev])
            return run

        env = clean_env(url, SENDGRID_API_HOST=sg.url, SENDGRID_API_KEY=sg.api_key, SENDGRID_TIMEOUT="90")
        import subprocess
        send = subprocess.Popen([digest_command(), "send", "--date", DAY, "--yes", "--json"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert sg.held.wait(30), "the send made no request within 30 s"
            started = time.monotonic()
            run_all([preferences(emails[t::4]) for t in range(4)]
                    + [unsubscribes(sorted(unsubscribing)[t::2]) for t in range(2)]
                    + [bounces(sorted(bouncing))])
            load_seconds = time.monotonic() - started
        finally:
            sg.gate.set()
            try:
                out, err = send.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                send.kill()
                out, err = send.communicate(timeout=10)
            traffic.close()
        traffic.assert_all_ok()
        cluster.assert_quiet_logs()
        print(f"{len(traffic.answers)} requests in {load_seconds:.1f} s while the send was held")

    assert "Traceback" not in err, err
    assert send.returncode == 0, f"digest send exited {send.returncode}:\n{err}\n{out}"
    summary = json.loads(out)
    assert saves == Counter({e: rounds for e in emails})

    # Nobody's write was lost.
    state = people_state(url)
    expected_status = {e: "unsubscribed" if e in unsubscribing else "bounced" if e in bouncing else "active"
                       for e in emails}
    assert {e: state[e][0] for e in emails} == expected_status
    assert {e: state[e][1] for e in emails} == {e: mask_of(final_sections[e]) for e in emails}

    # The chunk in flight went out as claimed; everyone else who left was withdrawn, not mailed.
    first = {p["to"][0]["email"].lower() for p in sg.requests[0]["body"]["personalizations"]}
    left = unsubscribing | bouncing
    assert 0 < len(first) < len(emails) and left - first, first
    mailed = first | (set(emails) - left)
    received = Counter(d["to"].lower() for d in sg.deliveries)
    assert received == Counter({e: 1 for e in mailed}), received
    assert summary["skipped_empty"] == 0 and summary["withdrawn"] == len(left - first), summary
    assert summary["counts"] == {"pending": 0, "sent": len(mailed), "failed": 0, "unknown": 0}, summary
    ledger = dict(rows(url, "SELECT email, status FROM ledger WHERE edition = :d", d=DAY))
    assert ledger == {e: "sent" for e in mailed}
