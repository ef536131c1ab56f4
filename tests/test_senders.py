"""Several senders sharing one edition (issue 9): `digest send --workers N`, and separate
`digest send` runs started at once, some killed with SIGKILL at random moments.

Whatever is killed: every recipient is sent exactly once or reported unknown, nobody is
sent twice, the survivors finish the rest, and only an explicit `--retry unknown` sends
the unknown ones (after the dead sender's lease has ended).
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.fake_sendgrid import FakeSendGrid
from tests.stores import copy_store
from tests.test_scale import (
    DAY,
    N_PEOPLE,
    TOML_4,
    KillingFake,
    build_big_store,
    db,
    delivered,
    ledger_status,
)
from tests.test_send import Site, wait_for


@pytest.fixture(scope="module")
def big_store(tmp_path_factory) -> Path:
    return build_big_store(tmp_path_factory)


def sender_children(pid: int) -> list[int]:
    """The sender processes of a `--workers` run (not multiprocessing's resource tracker)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    found = []
    for kid in kids:
        try:
            if b"resource_tracker" not in Path(f"/proc/{kid}/cmdline").read_bytes():
                found.append(int(kid))
        except FileNotFoundError:
            pass
    return found


def at_work(folder: Path, pids: list[int]) -> list[int]:
    """Those of `pids` holding rows in flight right now (a kill there is the hard case)."""
    claims = db(folder, "SELECT DISTINCT claim FROM ledger WHERE lease_until IS NOT NULL")
    busy = {int(c.split(":")[1]) for (c,) in claims}
    return [p for p in pids if p in busy]


def everyone_in(folder: Path) -> set[str]:
    return {e for (e,) in db(folder, "SELECT lower(email) FROM subscribers WHERE status = 'active'")}


def assert_truthful(folder: Path, sg: FakeSendGrid, everyone: set[str], summary: dict) -> set[str]:
    """Sent exactly once or unknown, nobody twice; the summary is the final ledger. -> unknown."""
    status = ledger_status(folder)
    assert set(status) == everyone
    assert set(status.values()) <= {"sent", "unknown"}, "a run ended with rows pending or failed"
    sent = {e for e, s in status.items() if s == "sent"}
    unknown = {e for e, s in status.items() if s == "unknown"}
    got = delivered(sg)
    assert max(got.values()) == 1, "someone was sent twice"
    assert all(got[e] == 1 for e in sent), "a row recorded sent was not delivered"
    assert set(got) <= sent | unknown
    assert summary["counts"] == {"pending": 0, "sent": len(sent), "failed": 0, "unknown": len(unknown)}
    assert {p["email"].lower() for p in summary["problems"]} == unknown
    assert summary["exit_code"] == (1 if unknown else 0)
    return unknown


def retry_the_unknown(site: Site, sg: FakeSendGrid, folder: Path, everyone: set[str], unknown: set[str]) -> None:
    before = len(sg.deliveries)
    retry = site.run("send", "--date", DAY, "--retry", "unknown", "--json")
    assert retry.returncode == 0, retry.stderr
    assert set(delivered(sg, before)) == unknown
    assert set(ledger_status(folder).values()) == {"sent"}
    twice = {e for e, n in delivered(sg).items() if n > 1}
    assert twice <= unknown and set(delivered(sg)) == everyone


class GatedFake(FakeSendGrid):
    """Answers no mail/send until `senders` processes hold claims in the ledger (or a minute
    has passed).  Why: on a busy machine a worker that starts late could find the whole
    edition already sent by the others, and "all of them took part" would then test the
    machine's scheduler, not the sharing."""

    def __init__(self, folder: Path, senders: int, **kw):
        super().__init__(**kw)
        self.folder, self.senders, self.opened = folder, senders, threading.Event()

    def _process(self, h, raw):
        deadline = time.monotonic() + 60
        while not self.opened.is_set() and time.monotonic() < deadline:
            if len(db(self.folder, "SELECT DISTINCT claim FROM ledger WHERE claim IS NOT NULL")) >= self.senders:
                self.opened.set()
            else:
                time.sleep(0.05)
        self.opened.set()
        return super()._process(h, raw)


@pytest.fixture
def site_4(tmp_path, run_digest, big_store):
    copy_store(big_store, tmp_path / "digest.db")
    (tmp_path / "digest.toml").write_text(TOML_4, encoding="utf-8")
    return tmp_path


def test_workers_share_the_edition_and_send_everyone_once(site_4, run_digest):
    with GatedFake(site_4, 3) as sg:
        site = Site(site_4, run_digest, sg)
        result = site.run("send", "--date", DAY, "--yes", "--workers", "3", "--json", timeout=180)
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary["workers"] == 3 and summary["renders"] == 3  # one render per sender process
        assert summary["sent"] == N_PEOPLE and summary["recipients"] == N_PEOPLE
        assert assert_truthful(site_4, sg, everyone_in(site_4), summary) == set()
        senders = {s for (s,) in db(site_4, "SELECT DISTINCT claim FROM ledger")}
        assert len(senders) == 3, senders  # all three took part
        assert db(site_4, "SELECT count(*) FROM ledger WHERE lease_until IS NOT NULL") == [(0,)]


@pytest.mark.parametrize("seed", [11, 12])
def test_a_worker_killed_mid_send_leaves_its_rows_unknown_and_the_others_finish(site_4, run_digest, seed):
    rng = random.Random(seed)
    everyone = everyone_in(site_4)
    with KillingFake(seed) as sg:
        site = Site(site_4, run_digest, sg)
        parent = site.popen("send", "--date", DAY, "--yes", "--workers", "3", "--json")
        try:
            moment = rng.randint(2, 12)
            wait_for(lambda moment=moment: sg.accepted >= moment, timeout=90)
            children = sender_children(parent.pid)
            assert len(children) == 3, children
            time.sleep(rng.uniform(0, 0.02))
            victim = rng.choice(at_work(site_4, children) or children)
            os.kill(victim, signal.SIGKILL)
            out, err = parent.communicate(timeout=180)
        finally:
            if parent.poll() is None:
                parent.kill()
        assert "Traceback" not in err, err
        summary = json.loads(out)
        assert parent.returncode == summary["exit_code"]
        assert any(f"pid {victim}" in n and "exit code -9" in n for n in summary["notes"]), summary["notes"]
        wait_for(lambda: sg.active == 0, timeout=15)
        unknown = assert_truthful(site_4, sg, everyone, summary)
        retry_the_unknown(site, sg, site_4, everyone, unknown)


@pytest.mark.parametrize("seed,kills", [(21, 1), (22, 2)])
def test_separate_senders_started_at_once_killed_at_random_survivors_finish(site_4, run_digest, seed, kills):
    """As on several hosts: three `digest send` runs of one edition, `kills` of them killed."""
    rng = random.Random(seed)
    everyone = everyone_in(site_4)
    with KillingFake(seed) as sg:
        site = Site(site_4, run_digest, sg)
        runs = [site.popen("send", "--date", DAY, "--yes", "--json") for _ in range(3)]
        try:
            victims = []
            for _ in range(kills):
                moment = rng.randint(2, 15)
                wait_for(lambda moment=moment: sg.accepted >= moment, timeout=90)
                time.sleep(rng.uniform(0, 0.02))
                alive = [r.pid for r in runs if r not in victims]
                pid = rng.choice(at_work(site_4, alive) or alive)
                victim = next(r for r in runs if r.pid == pid)
                victims.append(victim)
                victim.kill()
                victim.wait()  # reaped: to the others, its pid is gone (a zombie would look alive)
            finished = [(run, *run.communicate(timeout=180)) for run in runs]
        finally:
            for run in runs:
                if run.poll() is None:
                    run.kill()
        wait_for(lambda: sg.active == 0, timeout=15)
        summaries = []
        for run, out, err in finished:
            assert "Traceback" not in err, err
            if run in victims and run.returncode == -signal.SIGKILL:
                continue
            summaries.append(json.loads(out))
        assert summaries, "every run was killed"
        # Every survivor waited for the others, so each reports the same, final ledger.
        unknown = assert_truthful(site_4, sg, everyone, summaries[0])
        for later in summaries[1:]:
            assert later["counts"] == summaries[0]["counts"]
        assert sum(s["sent"] for s in summaries) <= N_PEOPLE
        retry_the_unknown(site, sg, site_4, everyone, unknown)


def test_workers_go_with_a_real_send_only(site_4, run_digest):
    with FakeSendGrid() as sg:
        site = Site(site_4, run_digest, sg)
        result = site.run("send", "--date", DAY, "--dry-run", "--workers", "2")
        assert result.returncode == 2 and "--workers goes with a real send" in result.stderr
