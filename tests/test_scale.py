"""Scale and hardening tests of the send path (issues 7 and 8).

End-to-end tests run the installed `digest` in a subprocess against the strict SendGrid
stand-in over HTTP, on real SQLite files:

- kill -9 at random moments with several requests in flight: the ledger stays truthful,
  reruns send exactly what is left, only `unknown` rows can ever be delivered twice;
- `send --dry-run --sample N` spreads N files over the distinct digests;
- a frozen edition with a story that breaks MJML fails only that story's readers, and
  `--refreeze --retry failed` is the way out;
- people who leave during a run are not mailed;
- the bulk CSV import gives the same store in parallel and serially, and an interrupted
  import says (truthfully) what it saved.

In-process tests check the per-recipient fast path against digest.render.Personal and a
429 seen by one thread pausing another's request.
"""

from __future__ import annotations

import csv
import email
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import date
from email.utils import parseaddr
from pathlib import Path

import pytest

from digest.config import SECTIONS, Settings, section_mask
from tests.conftest import SAMPLE, SAMPLE_DAY, SECRET, digest_command
from tests.fake_sendgrid import FakeSendGrid
from tests.stores import copy_store, rows, store_url
from tests.test_send import Site, request_recipients, wait_for

DAY = SAMPLE_DAY
BASE_URL = "https://news.example.com/digest"
TOML_4 = """\
[sendgrid]
concurrency = 4
retry_base_delay = 0.05
"""
TOML_1 = TOML_4.replace("concurrency = 4", "concurrency = 1")


def cli_env(folder: Path) -> dict:
    return {"PATH": "/usr/bin:/bin", "DIGEST_DATABASE_URL": store_url(folder / "digest.db")}


def digest_in(folder: Path, *args, timeout=300) -> subprocess.CompletedProcess:
    """The installed CLI in `folder` (setup steps of module-wide stores); must succeed."""
    done = subprocess.run([digest_command(), *map(str, args)], cwd=folder, env=cli_env(folder),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done


def db(folder: Path, sql: str, **params) -> list[tuple]:
    return rows(store_url(folder / "digest.db"), sql, **params)


def ledger_status(folder: Path) -> dict[str, str]:
    return dict(db(folder, "SELECT lower(email), status FROM ledger WHERE edition = :day", day=DAY))


def delivered(sg: FakeSendGrid, since: int = 0) -> Counter:
    with sg._lock:
        return Counter(d["to"].lower() for d in sg.deliveries[since:])


# -- 1. kill -9 with requests in flight -----------------------------------------------------

N_PEOPLE = 2000


def build_big_store(tmp_path_factory) -> Path:
    """The sample articles and ~2,000 subscribers with 1-3 random sections, imported by the CLI."""
    folder = tmp_path_factory.mktemp("big-store")
    rng = random.Random(2000)
    people = folder / "people.csv"
    with people.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["email", "name", "sections"])
        for i in range(N_PEOPLE):
            w.writerow([f"reader{i:04d}@example.net", f"Reader {i}", ";".join(rng.sample(SECTIONS, rng.randint(1, 3)))])
    digest_in(folder, "articles", "import", SAMPLE / "articles")
    out = digest_in(folder, "subscribers", "import", people)
    assert f"imported {N_PEOPLE}" in out.stdout
    return folder / "digest.db"


@pytest.fixture(scope="module")
def big_store(tmp_path_factory) -> Path:
    return build_big_store(tmp_path_factory)


class KillingFake(FakeSendGrid):
    """A stand-in that takes a few ms per request and can SIGKILL the sender at a chosen moment.

    `arm(pid, after, when)`:
      when="accepted"  kill while answering the `after`-th accepted request: SendGrid took it
                       (its deliveries are recorded) but the sender never hears the 202;
      when="arrival"   kill as the `after`-th request arrives (it is still processed and
                       delivered, as SendGrid would once the bytes are in);
      when="timer"     the test kills from outside a random few ms after `after` accepts.
    """

    def __init__(self, seed: int, *args, **kw):
        super().__init__(*args, **kw)
        self.rng = random.Random(seed)
        self.pid = self.after = self.when = None
        self.arrived = self.accepted = self.active = 0
        self.killed = threading.Event()
        self.counter_lock = threading.Lock()

    def arm(self, pid: int, after: int, when: str) -> None:
        self.pid, self.after, self.when = pid, after, when

    def _kill(self) -> None:
        if self.pid and not self.killed.is_set():
            os.kill(self.pid, signal.SIGKILL)
            self.killed.set()

    def _handle(self, h):
        with self.counter_lock:
            self.active += 1
            self.arrived += 1
            arrival = self.arrived
            pause = self.rng.uniform(0.002, 0.008)
        try:
            if self.when == "arrival" and arrival == self.after:
                self._kill()
            time.sleep(pause)
            super()._handle(h)
        finally:
            with self.counter_lock:
                self.active -= 1

    def _reply(self, h, status, payload=None, headers=()):
        if status == 202:
            with self.counter_lock:
                self.accepted += 1
                n = self.accepted
            if self.when == "accepted" and n == self.after:
                self._kill()  # the deliveries are recorded; the 202 never reaches the sender
        FakeSendGrid._reply(h, status, payload, headers)


@pytest.mark.parametrize("seed,when", [(1, "accepted"), (2, "arrival"), (3, "timer")])
def test_kill_9_with_requests_in_flight_leaves_a_truthful_ledger_and_reruns_never_duplicate_sent_rows(
        tmp_path, run_digest, big_store, seed, when):
    rng = random.Random(seed)
    copy_store(big_store, tmp_path / "digest.db")
    (tmp_path / "digest.toml").write_text(TOML_4, encoding="utf-8")
    everyone = {e for (e,) in db(tmp_path, "SELECT lower(email) FROM subscribers WHERE status = 'active'")}
    assert len(everyone) == N_PEOPLE
    digests = db(tmp_path, "SELECT count(DISTINCT section_mask) FROM subscribers")[0][0]
    after = rng.randint(3, digests // 2)  # a random moment well inside the run

    with KillingFake(seed) as sg:
        site = Site(tmp_path, run_digest, sg)
        proc = site.popen("send", "--date", DAY, "--yes")
        sg.arm(proc.pid, after, when)
        try:
            if when == "timer":
                wait_for(lambda: sg.accepted >= after, timeout=60)
                time.sleep(rng.uniform(0, 0.02))
                sg._kill()
            else:
                wait_for(sg.killed.is_set, timeout=60)
        finally:
            if proc.poll() is None and not sg.killed.is_set():
                proc.kill()
            out, err = proc.communicate(timeout=30)  # reaps it: its pid no longer holds the send lock
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, out, err)
        assert "Traceback" not in err
        wait_for(lambda: sg.active == 0, timeout=15)  # requests already in the stand-in finish
        sg.arm(None, None, None)

        # The ledger after the kill is truthful.
        status = ledger_status(tmp_path)
        assert set(status) == everyone  # frozen: every active subscriber has a row (the lead story)
        by_status = {s: {e for e, st in status.items() if st == s} for s in ("pending", "sent", "failed", "unknown")}
        got = delivered(sg)
        assert max(got.values()) == 1  # one run never sends anyone twice
        assert all(got[e] == 1 for e in by_status["sent"]), "a row recorded sent was not delivered"
        assert {e: status[e] for e in got if status[e] not in ("sent", "unknown")} == {}
        assert not (by_status["pending"] & set(got)), "a pending row was delivered"
        assert by_status["failed"] == set()
        assert by_status["pending"], "the kill came after the whole run"
        if when == "accepted":
            # The request being answered at the kill was delivered but never recorded: unknown.
            # (Not so for "arrival": when the killed sender's socket had unread bytes, its
            # kernel answers with a reset, which discards the request body the stand-in had
            # not read yet, so that request may never be delivered.)
            assert by_status["unknown"] & set(got)
        unknown_after_kill = set(by_status["unknown"])
        delivered_before_rerun = len(sg.deliveries)

        # A plain rerun sends exactly the pending rows, each once, and reports the unknown ones.
        rerun = site.run("send", "--date", DAY, "--yes", "--json")
        summary = json.loads(rerun.stdout)
        assert rerun.returncode == (1 if unknown_after_kill else 0), rerun.stderr
        assert delivered(sg, delivered_before_rerun) == Counter({e: 1 for e in by_status["pending"]})
        assert summary["sent"] == len(by_status["pending"])
        assert summary["counts"] == {"pending": 0, "sent": N_PEOPLE - len(unknown_after_kill), "failed": 0,
                                     "unknown": len(unknown_after_kill)}
        assert {p["email"].lower() for p in summary["problems"]} == unknown_after_kill
        assert ledger_status(tmp_path) == {e: ("unknown" if e in unknown_after_kill else "sent") for e in everyone}

        # --retry unknown sends the rest; over all runs only those unknown rows went twice.
        before_retry = len(sg.deliveries)
        retry = site.run("send", "--date", DAY, "--retry", "unknown", "--json")
        assert retry.returncode == 0, retry.stderr
        assert delivered(sg, before_retry) == Counter({e: 1 for e in unknown_after_kill})
        total = delivered(sg)
        assert set(total) == everyone
        twice = {e for e, n in total.items() if n > 1}
        assert twice <= unknown_after_kill
        assert twice == unknown_after_kill & set(got)  # exactly the maybe-sent ones SendGrid had taken
        assert max(total.values()) <= 2
        assert set(ledger_status(tmp_path).values()) == {"sent"}


# -- 2. dry run with --sample ----------------------------------------------------------------

@pytest.fixture(scope="module")
def thirty_digests(tmp_path_factory) -> tuple[Path, dict[str, tuple[str, ...]]]:
    """Sample articles and 90 subscribers in 30 distinct section sets (3 each)."""
    folder = tmp_path_factory.mktemp("thirty")
    pairs = [(a, b) for i, a in enumerate(SECTIONS) for b in SECTIONS[i + 1:]]
    chosen = random.Random(30).sample(pairs, 30)
    who = {}
    with (folder / "people.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["email", "name", "sections"])
        for d, sections in enumerate(chosen):
            for k in range(3):
                address = f"d{d:02d}.p{k}@example.org"
                who[address] = tuple(s for s in SECTIONS if s in sections)
                w.writerow([address, f"Person {d}-{k}", ";".join(sections)])
    digest_in(folder, "articles", "import", SAMPLE / "articles")
    digest_in(folder, "subscribers", "import", folder / "people.csv")
    return folder / "digest.db", who


def written(outbox: Path) -> list[str]:
    addresses = []
    for path in sorted(outbox.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes())
        addresses.append(parseaddr(msg["To"])[1].lower())
    return addresses


@pytest.mark.parametrize("n", [
    10, 1, 30,
    45])  # more files than digests: every digest gets one, some two
def test_dry_run_sample_writes_n_files_spread_over_distinct_digests(tmp_path, run_digest, thirty_digests, n):
    store, who = thirty_digests
    copy_store(store, tmp_path / "digest.db")
    result = run_digest("send", "--date", DAY, "--dry-run", "--sample", n, "--outbox", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    files = written(tmp_path / "out")
    assert len(files) == n == summary["emails_written"]
    assert len(set(files)) == n
    assert summary["recipients"] == len(who) == 90  # everyone's message was still built and checked
    assert summary["digests"] == 30 and summary["mode"] == "dry-run" and summary["exit_code"] == 0
    section_sets = Counter(who[a] for a in files)
    assert len(section_sets) == min(n, 30), section_sets  # spread: one digest per file until all are covered
    assert max(section_sets.values()) == -(-n // 30)
    # A dry run freezes nothing and writes no ledger rows.
    assert db(tmp_path, "SELECT count(*) FROM editions") == [(0,)]
    assert db(tmp_path, "SELECT count(*) FROM ledger") == [(0,)]


def test_sample_without_dry_run_is_a_usage_error(tmp_path, run_digest, thirty_digests):
    store, _ = thirty_digests
    copy_store(store, tmp_path / "digest.db")
    result = run_digest("send", "--date", DAY, "--sample", 10,
                        env={"SENDGRID_API_KEY": "SG.x", "DIGEST_SECRET_KEY": SECRET})
    assert result.returncode == 2
    assert "--sample" in result.stderr and "--dry-run" in result.stderr and "Traceback" not in result.stderr
    assert db(tmp_path, "SELECT count(*) FROM editions") == [(0,)]  # nothing done


# -- 3. a frozen edition whose story breaks MJML ----------------------------------------------

BROKEN_ID = "runaway-parrot-returns"  # the day's only tabloid story
TABLOID = section_mask(["tabloid"])


@pytest.fixture
def sample_site(tmp_path, run_digest):
    """Sample articles (a copy we may edit) and subscribers imported by the CLI, concurrency 1."""
    shutil.copytree(SAMPLE / "articles", tmp_path / "articles")
    for args in (("articles", "import", tmp_path / "articles"), ("subscribers", "import", SAMPLE / "subscribers.csv")):
        assert run_digest(*args).returncode == 0
    (tmp_path / "digest.toml").write_text(TOML_1, encoding="utf-8")
    return tmp_path


def test_a_frozen_story_that_breaks_mjml_fails_only_its_readers_and_refreeze_is_the_way_out(
        sample_site, run_digest):
    folder = sample_site
    with FakeSendGrid() as sg:
        site = Site(folder, run_digest, sg)
        # Freeze the edition with a real run that SendGrid stops at once (the key is refused).
        sg.inject("401")
        assert site.send().returncode == 2
        assert site.status()["counts"]["pending"] == 8 and sg.deliveries == []
        # The frozen copy of one story holds a control character (as stores frozen before the
        # import cleaned text do): MJML cannot parse it.
        [(frozen,)] = db(folder, "SELECT articles FROM editions WHERE date = :day", day=DAY)
        stories = json.loads(frozen) if isinstance(frozen, str) else frozen  # PostgreSQL's driver parses JSON
        broken = next(a for a in stories if a["id"] == BROKEN_ID)
        assert broken["sections"] == ["tabloid"] and not broken["featured"]
        broken["title"] = "Runaway parrot \u0007 turns up"
        db(folder, "UPDATE editions SET articles = :stories WHERE date = :day", stories=json.dumps(stories), day=DAY)
        readers = {e for e, m in db(folder, "SELECT lower(email), section_mask FROM ledger") if m & TABLOID}
        others = {e for (e,) in db(folder, "SELECT lower(email) FROM ledger")} - readers
        assert readers and others

        result = site.send("--json")
        assert result.returncode == 1
        summary = json.loads(result.stdout)
        assert summary["counts"] == {"pending": 0, "sent": len(others), "failed": len(readers), "unknown": 0}
        assert {p["email"].lower() for p in summary["problems"]} == readers
        reasons = dict(db(folder, "SELECT lower(email), reason FROM ledger WHERE status = 'failed'"))
        assert set(reasons) == readers
        assert all("cannot be rendered" in r for r in reasons.values()), reasons
        assert delivered(sg) == Counter({e: 1 for e in others})

        # Fix the file, import it again, refreeze and retry the failed rows.
        path = folder / "articles" / DAY / f"{BROKEN_ID}.md"
        text = path.read_text(encoding="utf-8")
        fixed = "Runaway parrot comes home from a bakery 40 km away"
        path.write_text(text.replace("title: Runaway parrot turns up at a bakery 40 km from home", f"title: {fixed}"),
                        encoding="utf-8")
        assert fixed in path.read_text(encoding="utf-8")
        assert site.run("articles", "import", path).returncode == 0
        fix = site.send("--refreeze", "--retry", "failed", "--json")
        assert fix.returncode == 0, fix.stderr
        assert json.loads(fix.stdout)["sent"] == len(readers)
        assert delivered(sg) == Counter({e: 1 for e in readers | others})  # everyone exactly once
        for e in readers:
            [d] = sg.deliveries_to(e)
            assert fixed in d["html"] and fixed in d["text"]
        assert site.status()["counts"] == {"pending": 0, "sent": 8, "failed": 0, "unknown": 0}


# -- 4. people who leave during a run ----------------------------------------------------------

ALEX = "alex.reader@example.com"  # follows every section: the last digest, the last request


class LeavesDuringFirstRequest(FakeSendGrid):
    """While answering the first request, `leaver` unsubscribes (written straight into the store)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.folder = self.leaver = None
        self.first_recipients: list[str] | None = None

    def _handle(self, h):
        with self._lock:
            first = self.first_recipients is None and h.path.startswith("/v3/mail/send")
            if first:
                self.first_recipients = []
        if first:
            raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
            self.first_recipients = [p["to"][0]["email"].lower() for p in json.loads(raw)["personalizations"]]
            db(self.folder, "UPDATE subscribers SET status = 'unsubscribed', status_reason = 'left mid-run' "
                            "WHERE email_key = :leaver", leaver=self.leaver)
            h.rfile = _Replay(raw)  # the stand-in reads the body itself
        super()._handle(h)


class _Replay:
    def __init__(self, data: bytes):
        self.data = data

    def read(self, n=-1):
        out, self.data = (self.data, b"") if n < 0 else (self.data[:n], self.data[n:])
        return out


def test_someone_who_leaves_while_the_run_goes_on_is_not_mailed(sample_site, run_digest):
    folder = sample_site
    with LeavesDuringFirstRequest() as sg:
        sg.folder, sg.leaver = folder, ALEX
        site = Site(folder, run_digest, sg)
        result = site.send("--json")
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert sg.first_recipients and ALEX not in sg.first_recipients  # Alex's digest went later
        assert summary["withdrawn"] == 1
        assert ALEX not in delivered(sg)
        everyone_else = {e.lower() for (e,) in db(folder, "SELECT email FROM subscribers WHERE status = 'active'")}
        assert len(everyone_else) == 7 and delivered(sg) == Counter({e: 1 for e in everyone_else})
        assert summary["counts"] == {"pending": 0, "sent": 7, "failed": 0, "unknown": 0}
        assert ALEX not in ledger_status(folder)  # withdrawn, not left pending or marked sent
        assert all(ALEX not in request_recipients(r) for r in sg.requests)


# -- 5. bulk import: parallel and serial give the same store ------------------------------------

ROWS = 25_000


def big_csv(path: Path) -> tuple[dict[int, str], dict[str, tuple]]:
    """A 25,000-row CSV with bad rows and later duplicates; -> (bad line -> why, expected store).

    Duplicates keep the address's case and status (where "later wins" is unambiguous) and
    change name and sections; some are far later (another chunk), some close (the same one).
    """
    rng = random.Random(25_000)
    bad: dict[int, str] = {}
    expected: dict[str, tuple] = {}
    lines = ["email,name,sections,status"]
    seen: list[tuple[str, str]] = []
    for i in range(ROWS):
        line = len(lines) + 1
        kind = rng.random()
        if kind < 0.01:
            row, why = [f"broken{i}.example.com", "No At", "world", "active"], "not a valid email address"
        elif kind < 0.015:
            row, why = [f"sect{i}@example.com", "Bad Section", "world;weather", "active"], "weather"
        elif kind < 0.02:
            row, why = [f"stat{i}@example.com", "Bad Status", "tech", "zombie"], "unknown status"
        elif kind < 0.022:
            row, why = [f"long{i}@example.com", "n" * 201, "tech", "active"], "longer than 200"
        elif kind < 0.10 and seen:
            address, status = seen[rng.randrange(len(seen))] if rng.random() < 0.5 else seen[-1]
            sections = tuple(sorted(rng.sample(SECTIONS, rng.randint(0, 3)), key=SECTIONS.index))
            row, why = [address, f"Renamed {i}", ";".join(sections), status], None
        else:
            address = f"Person{i:05d}@Example{i % 7}.com"
            status = rng.choice(["active"] * 8 + ["paused", "unsubscribed"])
            sections = tuple(sorted(rng.sample(SECTIONS, rng.randint(0, 3)), key=SECTIONS.index))
            row, why = [address, f"Person {i}", ";".join(sections), status], None
            seen.append((address, status))
        if why:
            bad[line] = why
        else:
            stored = address.split("@")[0] + "@" + address.split("@")[1].lower()  # the domain is lower-cased
            expected[stored.lower()] = (stored, row[1], sections, row[3])
        out = []
        for value in row:
            out.append(f'"{value}"' if ";" in value or "," in value else value)
        lines.append(",".join(out))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return bad, expected


def store_contents(engine) -> dict[str, tuple]:
    from digest.subscribers import store as subscriber_store
    return {s.email.lower(): (s.email, s.name, s.sections, s.status) for s in subscriber_store.list_all(engine)}


def test_bulk_import_in_parallel_gives_exactly_the_serial_result(tmp_path, settings, monkeypatch):
    from digest.store import open_store
    from digest.subscribers import importer
    path = tmp_path / "big.csv"
    bad, expected = big_csv(path)
    used = []
    real = importer._checked_chunks

    def spy(records, fields, settings, parallel):
        used.append(parallel)
        return real(records, fields, settings, parallel)
    monkeypatch.setattr(importer, "_checked_chunks", spy)

    parallel_engine = open_store(store_url(tmp_path / "parallel.db"))
    parallel = importer.import_csv(parallel_engine, path, settings)
    monkeypatch.setattr(importer, "PARALLEL_FROM", 10**9)  # the same file, checked in this process
    serial_engine = open_store(store_url(tmp_path / "serial.db"))
    serial = importer.import_csv(serial_engine, path, settings)
    assert used == [True, False]  # the file is big enough for the parallel path, and it was taken

    for report in (parallel, serial):
        assert report.interrupted is None and report.warnings == []
        assert report.imported == len(expected) and report.updated == 0
        assert [where for where, _ in report.rejected] == [f"line {n}" for n in sorted(bad)]
        for (where, why), n in zip(report.rejected, sorted(bad), strict=True):
            assert bad[n] in why, (where, why)
    assert parallel.rejected == serial.rejected
    assert (parallel.imported, parallel.updated) == (serial.imported, serial.updated)

    got = store_contents(parallel_engine)
    assert got == store_contents(serial_engine)
    assert got == expected  # later rows won, bad rows left nothing behind
    assert len(got) > 20_000


def test_a_reimport_updates_everyone_the_same_way_in_parallel_and_serially(tmp_path, settings, monkeypatch):
    """Importing the file into a store that already holds it: everyone 'updated', statuses kept."""
    from digest.store import open_store
    from digest.subscribers import importer
    path = tmp_path / "big.csv"
    _, expected = big_csv(path)
    engine = open_store(store_url(tmp_path / "d.db"))
    importer.import_csv(engine, path, settings)
    again = importer.import_csv(engine, path, settings)
    monkeypatch.setattr(importer, "PARALLEL_FROM", 10**9)
    third = importer.import_csv(engine, path, settings)
    assert again.imported == third.imported == 0
    assert again.updated == third.updated
    assert again.rejected == third.rejected
    assert store_contents(engine) == expected


def test_a_duplicate_address_gives_the_same_subscriber_wherever_the_chunk_boundary_falls(
        tmp_path, settings, monkeypatch):
    from digest.store import open_store
    from digest.subscribers import importer
    path = tmp_path / "dups.csv"
    path.write_text("email,name,sections,status\n"
                    "ann@example.com,Ann,world,active\n"
                    "bob@example.com,Bob,tech,active\n"
                    "carl@example.com,Carl,food,active\n"
                    "ANN@example.com,Ann Again,tech,unsubscribed\n", encoding="utf-8")
    results = {}
    for chunk in (5000, 2):
        monkeypatch.setattr(importer, "CHUNK", chunk)
        engine = open_store(store_url(tmp_path / f"chunk{chunk}.db"))
        importer.import_csv(engine, path, settings)
        results[chunk] = store_contents(engine)
    assert results[2] == results[5000]


def second_chunk_fails(monkeypatch) -> None:
    """Chunks of 10 rows, and saving the second one fails as a full disk would."""
    from digest.subscribers import importer
    monkeypatch.setattr(importer, "CHUNK", 10)
    real, calls = importer._save_chunk, []

    def failing(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk I/O error")
        return real(*args, **kw)
    monkeypatch.setattr(importer, "_save_chunk", failing)


def test_an_interrupted_import_says_which_rows_were_saved_and_exactly_those_are(tmp_path, engine, settings,
                                                                                monkeypatch):
    from digest.subscribers import importer
    path = tmp_path / "people.csv"
    rows = [f"p{i:02d}@example.com,P {i},tech" for i in range(35)]
    rows[3] = "not-an-address,Bad,tech"  # line 5, in the first chunk
    path.write_text("email,name,sections\n" + "\n".join(rows) + "\n", encoding="utf-8")
    second_chunk_fails(monkeypatch)

    with pytest.raises(importer.ImportInterrupted) as info:
        importer.import_csv(engine, path, settings)
    report = info.value.report
    assert "the rows up to line 11 were saved" in report.interrupted
    assert "disk I/O error" in report.interrupted and str(info.value) == report.interrupted
    assert report.imported == 9 and [w for w, _ in report.rejected] == ["line 5"]
    saved = {e for e, *_ in store_contents(engine).values()}
    assert saved == {f"p{i:02d}@example.com" for i in range(10) if i != 3}  # lines 2-11, nothing after


def test_an_interrupted_import_through_the_cli_prints_what_was_saved_and_exits_1(cli, workdir, monkeypatch):
    path = workdir / "people.csv"
    path.write_text("email,name,sections\n" + "".join(f"q{i:02d}@example.com,Q {i},world\n" for i in range(25)),
                    encoding="utf-8")
    second_chunk_fails(monkeypatch)
    result = cli("subscribers", "import", path)
    assert result.exit_code == 1
    assert "error: the import stopped (RuntimeError: disk I/O error)" in result.stderr
    assert "the rows up to line 11 were saved" in result.stderr and "Traceback" not in result.output
    assert "imported 10, updated 0, rejected 0" in result.stdout
    listed = cli.json("subscribers", "list", "--json")
    assert sorted(s["email"] for s in listed) == [f"q{i:02d}@example.com" for i in range(10)]


# -- 8. the per-recipient fast path agrees with digest.render.Personal ---------------------------

NAMES = ["", "Jo", "Tom & Jerry", "<b>Bold</b>", 'Say "hi"', "O'Brien", "a&<>\"'b", "&amp; already",
         "Zoë Ünïcode", "Smith, Jo", "x" * 200, " ", "<script>alert('x')</script>", "1 < 2 > 0"]


@pytest.mark.parametrize("base", [BASE_URL, BASE_URL + "/", "", "https://example.org"])
def test_planner_recipient_matches_personal_and_writes_the_unsubscribe_header(settings, base):
    from dataclasses import replace

    from digest.render import Personal
    from digest.select import Edition
    from digest.sending import Planner
    from digest.tokens import Signer
    settings = replace(settings, base_url=base)
    signer = Signer(SECRET)
    planner = Planner(Edition(date.fromisoformat(DAY), ()), settings, signer)
    expected_base = (base or settings.links_base).rstrip("/")
    for i, name in enumerate(NAMES, start=1):
        address = f"reader{i}@example.com"
        r = planner.recipient(i, address, name, ledger_id=100 + i)
        token = signer.manage_token(i, address)
        assert r.substitutions == Personal(name, token).substitutions(), name
        assert r.headers == {"List-Unsubscribe": f"<{expected_base}/unsubscribe/{token}>"}
        assert r.custom_args == {"subscriber_id": str(i)}
        assert (r.subscriber_id, r.email, r.name, r.ledger_id) == (i, address, name, 100 + i)
    assert planner.headers == {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",  # the same for all:
                               "List-Id": settings.list_id_header}                 # once per request


# -- 10. a 429 seen by one thread pauses the others ---------------------------------------------

def test_a_429_on_one_thread_pauses_the_next_request_of_another(monkeypatch):
    from digest.deliver.sendgrid import SendGridTransport
    from digest.deliver.transport import Batch
    from tests.test_send import RENDERED, recipient

    class Timed(FakeSendGrid):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.arrivals: list[tuple[float, str]] = []

        def _handle(self, h):
            raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
            who = json.loads(raw)["personalizations"][0]["to"][0]["email"]
            with self._lock:
                self.arrivals.append((time.monotonic(), who))
            h.rfile = _Replay(raw)
            super()._handle(h)

    sleeps: list[tuple[str, float, float]] = []  # (thread, when, seconds)
    a_paused = threading.Event()

    def sleep(seconds: float) -> None:
        sleeps.append((threading.current_thread().name, time.monotonic(), seconds))
        if threading.current_thread().name == "A":
            a_paused.set()
        time.sleep(seconds)

    with Timed() as sg:
        s = Settings(sendgrid_api_key=sg.api_key, sendgrid_host=sg.url, sendgrid_retry_base_delay=0.0,
                     sendgrid_timeout=5.0)
        t = SendGridTransport(s, sleep=sleep)
        sg.inject("429", reset_in=2)
        outcomes = {}

        def run(who: int):
            outcomes[who] = t.deliver(Batch(RENDERED, [recipient(who)]))

        a = threading.Thread(target=run, args=(1,), name="A")
        a.start()
        assert a_paused.wait(10), "A never waited for the rate limit"
        b_started = time.monotonic()
        b = threading.Thread(target=run, args=(2,), name="B")  # B starts while A waits out the 429
        b.start()
        a.join(15)
        b.join(15)

    assert [o.status for o in outcomes[1] + outcomes[2]] == ["sent", "sent"]
    assert [r["status"] for r in sg.requests] == [429, 202, 202]
    (t429, first), *rest = sg.arrivals
    assert first == "r1@example.com"
    b_arrival = next(when for when, who in rest if who == "r2@example.com")
    # B had not been rate limited itself, yet it waited for the reset A was told about (~2 s).
    b_sleeps = [(when, seconds) for name, when, seconds in sleeps if name == "B"]
    assert len(b_sleeps) == 1 and b_sleeps[0][0] >= b_started and b_sleeps[0][1] > 0.5
    assert b_arrival - t429 >= 1.9
    assert b_arrival >= b_sleeps[0][0] + b_sleeps[0][1] - 0.05
    # A's own retry waited too, and only once (no second 429 was needed).
    a_sleeps = [seconds for name, _, seconds in sleeps if name == "A"]
    assert len(a_sleeps) == 1 and a_sleeps[0] >= 1.9
