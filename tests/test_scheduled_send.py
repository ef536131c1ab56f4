"""Scheduled sending end to end: each reader's digest due at their own local hour.

The real CLI in a subprocess, against the strict SendGrid stand-in over real HTTP, on
both engines.  The audience spans zones either side of the date line, half-hour zones
and DST zones, at several hours; some readers are weekly, some paused.
"""

from __future__ import annotations

import email
import json
import signal
import subprocess
import time
from datetime import date, datetime, timedelta, timezone

import pytest

from digest.config import Settings
from digest.schedule import delivery_time
from tests.conftest import SECRET, digest_command, write_article
from tests.fake_sendgrid import MAX_SEND_AT_AHEAD, FakeSendGrid
from tests.stores import rows

TOML = """\
timezone = "Europe/London"
delivery_hour = 7
postal_address = "The Daily Digest, 1 Example Street, Exampleton EX1 2MP"

[sendgrid]
concurrency = 2
retry_base_delay = 0.05
"""
SETTINGS = Settings(timezone="Europe/London", delivery_hour=7)
ZONES = ["Pacific/Kiritimati", "Pacific/Pago_Pago", "Pacific/Auckland", "Asia/Kolkata", "Australia/Adelaide",
         "America/New_York", "Europe/London", None]
HOURS = [0, 6, 7, 23, None]


def tomorrow() -> date:
    return SETTINGS.today() + timedelta(days=1)


class Scheduled:
    """A store with one edition's stories and an audience over many zones and hours."""

    def __init__(self, tmp_path, run_digest, database_url, sg: FakeSendGrid, day: date):
        self.folder, self.run_digest, self.url, self.sg, self.day = tmp_path, run_digest, database_url, sg, day
        self.env = {"SENDGRID_API_HOST": sg.url, "SENDGRID_API_KEY": sg.api_key, "DIGEST_SECRET_KEY": SECRET,
                    "DIGEST_BASE_URL": "https://news.example.com/digest", "SENDGRID_TIMEOUT": "5"}
        (tmp_path / "digest.toml").write_text(TOML, encoding="utf-8")
        stories = tmp_path / "stories"
        published = f"{day.isoformat()}T09:00:00Z"
        write_article(stories, "lead", section="world", featured=True, published=published)
        write_article(stories, "chips", section="tech", published=published)
        write_article(stories, "comet", section="science", published=published)
        people = ["email,name,sections"]
        self.expected: dict[str, tuple[str | None, int | None]] = {}
        i = 0
        for zone in ZONES:
            for hour in HOURS:
                address = f"reader{i}@example.com"
                people.append(f"{address},Reader {i},{['world', 'tech', 'science;tech'][i % 3]}")
                self.expected[address] = (zone, hour)
                i += 1
        for extra in ("weekly1", "weekly2", "paused", "back"):
            people.append(f"{extra}@example.com,{extra.capitalize()},world")
        (tmp_path / "people.csv").write_text("\n".join(people) + "\n", encoding="utf-8")
        assert self.run("articles", "import", "stories").returncode == 0
        assert self.run("subscribers", "import", "people.csv").returncode == 0
        for address, (zone, hour) in self.expected.items():
            self.db("UPDATE subscribers SET timezone = :z, delivery_hour = :h WHERE email = :e",
                    z=zone, h=hour, e=address)
        # Weekly readers whose day is not the edition's anywhere (tests/test_weekly.py sends theirs).
        self.db("UPDATE subscribers SET cadence = 'weekly', weekday = :w WHERE email LIKE 'weekly%'",
                w=(day.weekday() + 3) % 7)
        # Due at 07:00 London on the edition's day: paused until the next day means nothing;
        # paused until that very day means the digest (nothing *before* the date).
        self.db("UPDATE subscribers SET paused_until = :d WHERE email = 'paused@example.com'",
                d=(day + timedelta(days=1)).isoformat())
        self.db("UPDATE subscribers SET paused_until = :d WHERE email = 'back@example.com'", d=day.isoformat())
        self.expected["back@example.com"] = (None, None)

    def run(self, *args, **env):
        result = self.run_digest(*args, env={**self.env, **env})
        assert "Traceback" not in result.stderr + result.stdout, result.stderr
        return result

    def send(self, *args):
        return self.run("send", "--date", self.day.isoformat(), "--yes", *args)

    def status(self) -> dict:
        return json.loads(self.run("status", "--date", self.day.isoformat(), "--json").stdout)

    def db(self, sql: str, **params):
        return rows(self.url, sql, **params)

    def due(self, address: str) -> int:
        zone, hour = self.expected[address]
        return int(delivery_time(self.day, SETTINGS, zone or SETTINGS.timezone, 7 if hour is None else hour)
                   .timestamp())


@pytest.fixture
def sg():
    with FakeSendGrid() as server:
        yield server


@pytest.fixture
def site(tmp_path, run_digest, database_url, sg) -> Scheduled:
    return Scheduled(tmp_path, run_digest, database_url, sg, tomorrow())


def test_every_reader_is_due_at_their_own_hour_in_one_batch_and_a_rerun_sends_nothing(site, sg):
    result = site.send("--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    got = {d["to"]: d for d in sg.deliveries}
    # Weekly readers get no daily digest; the paused one nothing before the date.
    assert set(got) == set(site.expected)
    for address, delivery in got.items():
        assert delivery["send_at"] == site.due(address), address
    # Every request holds one send_at (at the top level) and the edition's one batch id.
    [(batch_id,)] = site.db("SELECT batch_id FROM editions WHERE date NOT LIKE 'weekly-%'")
    assert batch_id and [c for c in sg.api_calls if c[1] == "/v3/mail/batch"] == [("POST", "/v3/mail/batch", None)]
    for request in sg.requests:
        body = request["body"]
        assert body["batch_id"] == batch_id
        assert all("send_at" not in p for p in body["personalizations"])
        assert {site.due(p["to"][0]["email"]) for p in body["personalizations"]} == {body["send_at"]}
    # Few distinct (zone, hour) pairs: requests are one per (digest, due time), not per reader.
    pairs = {(site.due(a), a) for a in got}
    assert len(sg.requests) < len(pairs)
    assert summary["scheduled"] == len(got) and summary["counts"]["sent"] == len(got)
    # The weekly readers are not due today: their weekly edition has no row, and no batch.
    assert summary["weekly"]["date"] == f"weekly-{site.day.isoformat()}"
    assert summary["weekly"]["counts"] == {"pending": 0, "sent": 0, "failed": 0, "unknown": 0}
    assert site.db("SELECT batch_id FROM editions WHERE date LIKE 'weekly-%'") == [(None,)]

    report = site.status()
    assert report["scheduled"] == len(got)
    first = min(site.due(a) for a in got)
    assert report["next_due"] == f"{datetime.fromtimestamp(first, timezone.utc):%Y-%m-%d %H:%M:%S}"
    text = site.run("status", "--date", site.day.isoformat()).stdout
    assert f"{len(got)} sent" in text and f"({len(got)} of them scheduled)" in text and "next due:" in text
    # The ledger shows when each row is due.
    due = {e: at for e, at in site.db("SELECT email, send_at FROM ledger")}
    for address in got:
        at = due[address]
        at = datetime.fromisoformat(at) if isinstance(at, str) else at
        assert int(at.replace(tzinfo=timezone.utc).timestamp()) == site.due(address)

    again = site.send()
    assert again.returncode == 0 and len(sg.deliveries) == len(got)


def test_the_dry_run_applies_the_same_rules_and_records_each_due_time(site, sg):
    result = site.run("send", "--dry-run", "--date", site.day.isoformat(), "--outbox", "out")
    assert result.returncode == 0, result.stderr
    written = {}
    for path in (site.folder / "out").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes())
        written[email.utils.parseaddr(message["To"])[1]] = message["X-Digest-Send-At"]
    assert set(written) == set(site.expected)
    for address, at in written.items():
        assert at == f"{datetime.fromtimestamp(site.due(address), timezone.utc):%Y-%m-%dT%H:%M:%S}Z"
    assert sg.requests == [] and site.db("SELECT count(*) FROM ledger") == [(0,)]


def test_cancel_stops_what_is_scheduled_and_only_that(site, sg):
    not_sent = site.run("cancel", "--date", site.day.isoformat())
    assert not_sent.returncode == 1 and "has no SendGrid batch" in not_sent.stderr
    assert site.send().returncode == 0
    done = site.run("cancel", "--date", site.day.isoformat())
    after = time.time() + 600
    assert done.returncode == 0, done.stderr
    [(batch_id,)] = site.db("SELECT batch_id FROM editions WHERE date NOT LIKE 'weekly-%'")
    assert sg.scheduled_sends[batch_id]["status"] == "cancel"
    later = sum(1 for a in site.expected if site.due(a) > after)
    assert f"{later} recipient(s) not yet due will not get it" in done.stdout
    report = site.status()
    assert report["counts"]["cancelled"] == later
    assert report["counts"]["sent"] == len(site.expected) - later
    # SendGrid discards every cancelled message when it comes due.
    assert len(sg.inbox(at=time.time() + 4 * 86400)) == len(site.expected) - later
    # Cancelled rows are settled: a rerun sends nothing, and exits 0.
    assert site.send().returncode == 0 and len(sg.deliveries) == len(site.expected)
    twice = site.run("cancel", "--date", site.day.isoformat())
    assert twice.returncode == 1 and "cancelled already" in twice.stderr
    resume = site.run("cancel", "--date", site.day.isoformat(), "--resume")
    assert resume.returncode == 1 and "cannot be resumed" in resume.stderr


def test_pause_holds_and_resume_releases(site, sg):
    assert site.send().returncode == 0
    nothing = site.run("cancel", "--date", site.day.isoformat(), "--resume")
    assert nothing.returncode == 1 and "not paused" in nothing.stderr
    paused = site.run("cancel", "--date", site.day.isoformat(), "--pause")
    assert paused.returncode == 0 and "paused the scheduled sends" in paused.stdout
    [(batch_id,)] = site.db("SELECT batch_id FROM editions WHERE date NOT LIKE 'weekly-%'")
    assert sg.scheduled_sends[batch_id]["status"] == "pause"
    assert sg.inbox(at=time.time() + 4 * 86400) == []
    assert site.status()["counts"]["sent"] == len(site.expected)  # the ledger is unchanged by a pause
    resumed = site.run("cancel", "--date", site.day.isoformat(), "--resume")
    assert resumed.returncode == 0 and batch_id not in sg.scheduled_sends
    assert [c[0] for c in sg.api_calls if c[1].endswith(batch_id)][-1] == "DELETE"
    assert len(sg.inbox(at=time.time() + 4 * 86400)) == len(site.expected)


def test_cancel_is_refused_when_it_is_too_late(tmp_path, run_digest, database_url, sg):
    past = Scheduled(tmp_path, run_digest, database_url, sg, SETTINGS.today() - timedelta(days=1))
    assert past.send().returncode == 0
    assert all(d["send_at"] is None for d in sg.deliveries)  # due times past: sent now, no send_at
    late = past.run("cancel", "--date", past.day.isoformat())
    assert late.returncode == 1 and "too late" in late.stderr and "10 minutes" in late.stderr
    assert sg.scheduled_sends == {} and past.status()["counts"]["sent"] == len(past.expected)


def test_rows_due_beyond_72_hours_stay_pending_for_a_later_run(tmp_path, run_digest, database_url, sg):
    ahead = Scheduled(tmp_path, run_digest, database_url, sg, SETTINGS.today() + timedelta(days=4))
    result = ahead.send("--json")
    assert result.returncode == 1  # not everyone is sent yet: the truth, for cron
    summary = json.loads(result.stdout)
    first = min(ahead.due(a) for a in ahead.expected)
    assert summary["held"] == len(ahead.expected) and sg.requests == []
    from_when = datetime.fromtimestamp(first - MAX_SEND_AT_AHEAD, timezone.utc)
    assert summary["held_until"] == f"{from_when:%Y-%m-%d %H:%M} UTC"
    assert "more than 72 hours ahead" in result.stderr and f"again from {from_when:%Y-%m-%d %H:%M}" in result.stderr
    report = ahead.status()
    assert report["counts"]["pending"] == len(ahead.expected) and report["held"] == len(ahead.expected)


def test_kill_and_rerun_never_sends_twice_and_keeps_send_at(site, sg):
    sg.inject("hang", seconds=30)  # the background run's first request never answers; then SIGKILL
    env = {**site.env, "PATH": "/usr/bin:/bin", "DIGEST_DATABASE_URL": site.url, "SENDGRID_TIMEOUT": "30"}
    proc = subprocess.Popen([digest_command(), "send", "--date", site.day.isoformat(), "--yes"], cwd=site.folder,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while len(sg.requests) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    before = dict(site.db("SELECT email, send_at FROM ledger"))
    rerun = site.send()
    assert rerun.returncode == 1  # the rows of the killed request are unknown: reported, never resent
    assert dict(site.db("SELECT email, send_at FROM ledger")) == before
    sent_to = [d["to"] for d in sg.deliveries]
    assert len(sent_to) == len(set(sent_to))
    # Claimed by the killed run (its hanging request, and any other it had in flight): unknown.
    in_flight = {e for (e,) in site.db("SELECT email FROM ledger WHERE status = 'unknown'")}
    assert {p["to"][0]["email"] for p in sg.requests[0]["body"]["personalizations"]} <= in_flight
    # Everyone else got it once; the unknown ones at most once (the killed run's second
    # request may have been accepted before the kill).
    assert set(site.expected) - in_flight <= set(sent_to) <= set(site.expected)
    for d in sg.deliveries:
        assert d["send_at"] == site.due(d["to"])


def test_sandbox_checks_send_at(tmp_path, run_digest, database_url, sg):
    near = Scheduled(tmp_path, run_digest, database_url, sg, tomorrow())
    result = near.run("send", "--sandbox", "--date", near.day.isoformat(), "--yes")
    assert result.returncode == 0, result.stderr
    assert all(r["body"]["send_at"] > time.time() for r in sg.requests) and "batch_id" not in sg.requests[0]["body"]
    assert near.db("SELECT count(*) FROM ledger") == [(0,)]


def test_several_workers_share_the_due_times(site, sg):
    result = site.send("--workers", "2")
    assert result.returncode == 0, result.stderr
    assert sorted(d["to"] for d in sg.deliveries) == sorted(site.expected)
    assert all(d["send_at"] == site.due(d["to"]) for d in sg.deliveries)
    assert len({r["body"]["batch_id"] for r in sg.requests}) == 1


def test_sandbox_leaves_out_what_is_too_far_ahead(tmp_path, run_digest, database_url, sg):
    far = Scheduled(tmp_path, run_digest, database_url, sg, SETTINGS.today() + timedelta(days=4))
    result = far.run("send", "--sandbox", "--date", far.day.isoformat(), "--yes")
    assert result.returncode == 0, result.stderr
    assert sg.requests == [] and f"{len(far.expected)} due beyond 72 hours not tried" in result.stdout
