"""The weekly edition end to end: who gets it, when, what it holds, and never twice.

The real CLI in a subprocess, against the strict SendGrid stand-in over real HTTP, on
both engines.  The edition day D is tomorrow in London (so every send_at is ahead); the
weekly readers live either side of the date line, so "their weekday" is their own:
at 07:00 in Auckland the edition of D arrives on D + 1, in Los Angeles on D.
"""

from __future__ import annotations

import email
import json
import signal
import subprocess
import time
from datetime import date, timedelta

import pytest

from digest.config import Settings
from digest.delivery_time import WEEKDAYS
from digest.schedule import delivery_time
from tests.conftest import SECRET, digest_command, write_article
from tests.fake_sendgrid import FakeSendGrid
from tests.stores import rows

SETTINGS = Settings(timezone="Europe/London", delivery_hour=7)
DAY = SETTINGS.today() + timedelta(days=1)
WEEKLY_SUBJECT = f"The Daily Digest \u2014 the week to {DAY:%A} {DAY.day} {DAY:%B}"


def toml(weekly_weekday: int) -> str:
    return f"""\
timezone = "Europe/London"
delivery_hour = 7
weekly_weekday = "{WEEKDAYS[weekly_weekday]}"
weekly_per_section = 2
postal_address = "The Daily Digest, 1 Example Street, Exampleton EX1 2MP"

[sendgrid]
concurrency = 2
retry_base_delay = 0.05
"""


def at(day: date, hour: int = 9) -> str:
    return f"{day.isoformat()}T{hour:02d}:00:00Z"


# (address, zone, weekday (None: the newsletter's), paused_until): weekly readers.
def weekly_readers() -> list[tuple[str, str | None, int | None, str | None]]:
    d, next_day, before = DAY.weekday(), (DAY + timedelta(days=1)).weekday(), (DAY - timedelta(days=1)).weekday()
    return [
        ("auckland@example.com", "Pacific/Auckland", next_day, None),   # D's digest is due there on D + 1
        ("auckland-no@example.com", "Pacific/Auckland", d, None),       # London's weekday is not theirs
        ("la@example.com", "America/Los_Angeles", d, None),             # due on D there
        ("la-no@example.com", "America/Los_Angeles", before, None),     # London's midnight is D - 1 there
        ("default@example.com", None, None, None),                      # weekly_weekday = D's
        ("paused@example.com", None, d, (DAY + timedelta(days=1)).isoformat()),  # paused on their day
        ("back@example.com", None, d, DAY.isoformat()),                 # back on their day: gets it
    ]


EXPECTED = {"auckland@example.com": "Pacific/Auckland", "la@example.com": "America/Los_Angeles",
            "default@example.com": "Europe/London", "back@example.com": "Europe/London"}


class Week:
    """A store with eight days of stories (D - 7 … D), daily readers and weekly readers."""

    def __init__(self, tmp_path, run_digest, database_url, sg: FakeSendGrid):
        self.folder, self.run_digest, self.url, self.sg = tmp_path, run_digest, database_url, sg
        self.env = {"SENDGRID_API_HOST": sg.url, "SENDGRID_API_KEY": sg.api_key, "DIGEST_SECRET_KEY": SECRET,
                    "DIGEST_BASE_URL": "https://news.example.com/digest", "SENDGRID_TIMEOUT": "5"}
        (tmp_path / "digest.toml").write_text(toml(DAY.weekday()), encoding="utf-8")
        stories = tmp_path / "stories"
        for back in range(8):  # back = 7 is the day before the week: in no weekly edition of D
            day = DAY - timedelta(days=back)
            write_article(stories, f"lead-{back}", title=f"Lead of day {back}", section="world", featured=True,
                          published=at(day, 6))
        # Tech over the week, by priority: p1 and p2 make it (weekly_per_section = 2), p3 does not.
        write_article(stories, "chip-p2", title="Chip priority two", section="tech", priority=2,
                      published=at(DAY - timedelta(days=5)))
        write_article(stories, "chip-p1", title="Chip priority one", section="tech", priority=1,
                      published=at(DAY - timedelta(days=1)))
        write_article(stories, "chip-p3", title="Chip priority three", section="tech", priority=3,
                      published=at(DAY - timedelta(days=6)))
        write_article(stories, "comet", title="Comet of the week", section="science", priority=5,
                      published=at(DAY - timedelta(days=3)))
        write_article(stories, "pulled", title="Pulled story", section="science", priority=1,
                      published=at(DAY - timedelta(days=2)))
        write_article(stories, "old-science", title="Old science", section="science", priority=1,
                      published=at(DAY - timedelta(days=7)))
        people = ["email,name,sections", "daily@example.com,Dee,world;tech;science"]
        people += [f"{a},Reader,tech;science" for a, *_ in weekly_readers()]
        (tmp_path / "people.csv").write_text("\n".join(people) + "\n", encoding="utf-8")
        assert self.run("articles", "import", "stories").returncode == 0
        assert self.run("articles", "withdraw", "pulled").returncode == 0
        assert self.run("subscribers", "import", "people.csv").returncode == 0
        for address, zone, weekday, paused in weekly_readers():
            self.db("UPDATE subscribers SET cadence = 'weekly', timezone = :z, weekday = :w, paused_until = :p "
                    "WHERE email = :e", z=zone, w=weekday, p=paused, e=address)

    def run(self, *args, **env):
        result = self.run_digest(*args, env={**self.env, **env})
        assert "Traceback" not in result.stderr + result.stdout, result.stderr
        return result

    def send(self, *args):
        return self.run("send", "--date", DAY.isoformat(), "--yes", *args)

    def db(self, sql: str, **params):
        return rows(self.url, sql, **params)


@pytest.fixture
def sg():
    with FakeSendGrid() as server:
        yield server


@pytest.fixture
def week(tmp_path, run_digest, database_url, sg) -> Week:
    return Week(tmp_path, run_digest, database_url, sg)


def due(zone: str) -> int:
    return int(delivery_time(DAY, SETTINGS, zone, 7).timestamp())


def test_weekly_readers_get_the_weekly_edition_on_their_own_weekday_at_their_hour_once(week, sg):
    result = week.send("--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    key = f"weekly-{DAY.isoformat()}"
    assert summary["date"] == DAY.isoformat() and summary["weekly"]["date"] == key
    assert summary["weekly"]["edition"] == "weekly" and summary["weekly"]["counts"]["sent"] == len(EXPECTED)
    got: dict[str, list[dict]] = {}
    for d in sg.deliveries:
        got.setdefault(d["to"], []).append(d)
    # The daily reader gets the daily edition only; each weekly reader due today the weekly
    # one only, once; the others (not their day there, or paused) nothing.
    assert set(got) == {"daily@example.com", *EXPECTED}
    assert all(len(v) == 1 for v in got.values())
    [daily] = got["daily@example.com"]
    assert "the week to" not in daily["subject"] and daily["custom_args"]["edition"] == DAY.isoformat()
    for address, zone in EXPECTED.items():
        [mail] = got[address]
        assert mail["subject"] == WEEKLY_SUBJECT
        assert mail["custom_args"]["edition"] == key
        assert mail["send_at"] == due(zone), address
    # Its own edition in the ledger, with its own SendGrid batch.
    assert sorted(week.db("SELECT edition, count(*) FROM ledger GROUP BY edition")) == [
        (DAY.isoformat(), 1), (key, len(EXPECTED))]
    batches = dict(week.db("SELECT date, batch_id FROM editions"))
    assert batches[key] and batches[key] != batches[DAY.isoformat()]
    assert {d["batch_id"] for v in got.values() for d in v if d["subject"] == WEEKLY_SUBJECT} == {batches[key]}

    # A rerun sends nothing; status shows both editions.
    again = week.send()
    assert again.returncode == 0, again.stderr
    assert len(sg.deliveries) == len(EXPECTED) + 1
    status = json.loads(week.run("status", "--date", DAY.isoformat(), "--json").stdout)
    assert status["counts"]["sent"] == 1 and status["weekly"]["counts"]["sent"] == len(EXPECTED)
    only = week.run("status", "--date", DAY.isoformat(), "--edition", "weekly")
    assert only.returncode == 0 and only.stdout.startswith(f"{key}: 0 pending, {len(EXPECTED)} sent")

    # The next day's run: nobody's weekday there (Auckland's next local date is D + 2).
    later = week.run("send", "--date", (DAY + timedelta(days=1)).isoformat(), "--yes", "--edition", "weekly")
    assert later.returncode == 0, later.stderr
    assert len(sg.deliveries) == len(EXPECTED) + 1


def test_the_weekly_content_holds_the_week_leads_first_then_sections_by_priority(week, sg):
    sent = week.send("--edition", "weekly", "--workers", "2")  # sender processes share it like a daily one
    assert sent.returncode == 0, sent.stderr
    assert sorted(d["to"] for d in sg.deliveries) == sorted(EXPECTED)
    [mail] = sg.deliveries_to("la@example.com")
    text, html = mail["text"], mail["html"]
    # The week's leads, newest day first, before any section; the day before the week is out.
    leads = [text.index(f"Lead of day {back}") for back in range(7)]
    assert leads == sorted(leads) and "Lead of day 7" not in text
    heading = text.index("THIS WEEK\u2019S LEAD STORIES")
    assert heading < leads[0] < text.index("TECH") < text.index("SCIENCE")
    # Sections by priority, at most weekly_per_section; withdrawn and older stories left out.
    assert text.index("Chip priority one") < text.index("Chip priority two")
    assert "Chip priority three" not in text and "Pulled story" not in text and "Old science" not in text
    assert "Comet of the week" in text
    assert text.count("Lead of day 0") == 1  # a lead is not repeated in its section
    assert "This week\u2019s lead stories, then 3 more from Tech and Science." in text
    assert "This week&#8217;s lead stories" in html or "This week\u2019s lead stories" in html
    assert f"The week to {DAY:%A} {DAY.day} {DAY:%B %Y}" in text
    # No web version: the weekly email has no "View in your browser" link (the daily one does).
    assert "View in your browser" not in text and "/view/" not in html
    assert week.send("--edition", "daily").returncode == 0
    [daily] = sg.deliveries_to("daily@example.com")
    assert "View in your browser" in daily["text"]


def test_preview_weekly_shows_the_weekly_digest(week):
    shown = week.run("preview", "--weekly", "--date", DAY.isoformat(), "--sections", "tech", "--format", "text")
    assert shown.returncode == 0, shown.stderr
    assert "Lead of day 0" in shown.stdout and "Chip priority one" in shown.stdout
    assert "Comet of the week" not in shown.stdout  # not a tech story, not a lead
    daily = week.run("preview", "--date", DAY.isoformat(), "--sections", "tech", "--format", "text")
    assert "Lead of day 1" not in daily.stdout and "the week" not in daily.stdout.lower()
    eml = week.run("preview", "--weekly", "--date", DAY.isoformat(), "--subscriber", "la@example.com",
                   "--format", "eml")
    message = email.message_from_bytes(eml.stdout.encode("utf-8"))
    assert str(email.header.make_header(email.header.decode_header(message["Subject"]))) == WEEKLY_SUBJECT


def test_a_test_send_of_the_weekly_digest(week, sg):
    (week.folder / "digest.toml").write_text(toml(DAY.weekday()) + '[editors]\ntest_recipients = ["ed@example.com"]\n',
                                             encoding="utf-8")
    done = week.run("send", "--test-to", "ed@example.com", "--edition", "weekly", "--sections", "tech",
                    "--date", DAY.isoformat())
    assert done.returncode == 0, done.stderr
    [test] = sg.deliveries_to("ed@example.com")
    assert test["subject"] == f"[TEST] {WEEKLY_SUBJECT}"
    assert "Lead of day 0" in test["text"] and "Chip priority one" in test["text"]
    assert week.db("SELECT count(*) FROM ledger") == [(0,)] and week.db("SELECT count(*) FROM editions") == [(0,)]
    daily = week.run("send", "--test-to", "ed@example.com", "--sections", "tech", "--date", DAY.isoformat())
    assert daily.returncode == 0 and "the week" not in sg.deliveries_to("ed@example.com")[1]["subject"]


def test_the_dry_run_rehearses_both_editions(week, sg):
    result = week.run("send", "--dry-run", "--date", DAY.isoformat(), "--outbox", "out")
    assert result.returncode == 0, result.stderr
    daily = {email.utils.parseaddr(email.message_from_bytes(p.read_bytes())["To"])[1]
             for p in (week.folder / "out").glob("*.eml")}
    weekly = {email.utils.parseaddr(email.message_from_bytes(p.read_bytes())["To"])[1]
              for p in (week.folder / "out" / "weekly").glob("*.eml")}
    assert daily == {"daily@example.com"} and weekly == set(EXPECTED)
    assert f"dry run weekly-{DAY.isoformat()}:" in result.stdout
    assert sg.requests == [] and week.db("SELECT count(*) FROM ledger") == [(0,)]
    assert week.db("SELECT count(*) FROM editions") == [(0,)]


def test_kill_mid_send_and_rerun_never_sends_the_weekly_edition_twice(week, sg):
    sg.inject("hang", seconds=30)  # the first weekly request never answers; then SIGKILL
    env = {**week.env, "PATH": "/usr/bin:/bin", "DIGEST_DATABASE_URL": week.url, "SENDGRID_TIMEOUT": "30"}
    proc = subprocess.Popen([digest_command(), "send", "--date", DAY.isoformat(), "--yes", "--edition", "weekly"],
                            cwd=week.folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while len(sg.requests) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    rerun = week.send("--edition", "weekly")
    assert rerun.returncode == 1  # the killed request's rows are unknown: reported, never resent
    sent_to = [d["to"] for d in sg.deliveries]
    assert len(sent_to) == len(set(sent_to)) and set(sent_to) <= set(EXPECTED)
    unknown = {e for (e,) in week.db("SELECT email FROM ledger WHERE status = 'unknown'")}
    assert {p["to"][0]["email"] for p in sg.requests[0]["body"]["personalizations"]} <= unknown
    assert set(EXPECTED) - unknown <= set(sent_to)
    assert week.send("--edition", "weekly").returncode == 1 and len(sg.deliveries) == len(sent_to)
    # SendGrid's events carry the weekly key back: an unknown row it processed becomes sent.
    from digest.deliver import ledger
    from digest.store import open_store
    address = sorted(unknown)[0]
    [(sid,)] = week.db("SELECT id FROM subscribers WHERE email = :e", e=address)
    engine = open_store(week.url)
    assert ledger.reconcile(engine, f"weekly-{DAY.isoformat()}", sid, address, "msg-1")
    assert week.db("SELECT status FROM ledger WHERE email = :e", e=address) == [("sent",)]
    engine.dispose()


def test_the_archive_lists_daily_editions_only_and_cancel_covers_the_weekly_batch(week, sg):
    from digest.store import open_store
    from digest.web.archive import Archive
    from digest.web.site import Site
    assert week.send().returncode == 0
    settings = Settings(timezone="Europe/London", database_url=week.url, secret_key=SECRET)
    archive = Archive(Site(settings, open_store(week.url)))
    assert archive.frozen_days() == [DAY]
    cancelled = week.run("cancel", "--date", DAY.isoformat())
    assert cancelled.returncode == 0, cancelled.stderr
    lines = cancelled.stdout.splitlines()
    assert len(lines) == 2 and DAY.isoformat() in lines[0] and f"weekly-{DAY.isoformat()}" in lines[1]
    statuses = dict(week.db("SELECT edition, status FROM ledger WHERE email = 'la@example.com'"))
    assert statuses == {f"weekly-{DAY.isoformat()}": "cancelled"}


def test_migration_0012_widens_the_edition_key_of_a_store_with_rows_and_back(tmp_path):
    from alembic import command
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.pool import NullPool

    from digest.store import _alembic_config, normalise_url, open_store
    from tests.stores import ENGINE_NAME, store_url
    url = store_url(tmp_path / "old.db")
    engine = create_engine(normalise_url(url), poolclass=NullPool)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0011")
    now = "2026-11-25 06:00:00"
    rows(url, "INSERT INTO editions (date, frozen_at, articles) VALUES ('2026-11-25', :now, '[]')", now=now)
    rows(url, "INSERT INTO ledger (edition, subscriber_id, email, name, status, attempts, updated_at, section_mask) "
              "VALUES ('2026-11-25', 1, 'a@example.com', '', 'sent', 1, :now, 1)", now=now)
    if ENGINE_NAME == "postgresql":  # before 0012 a weekly key does not fit (SQLite ignores lengths)
        with pytest.raises(DBAPIError):
            rows(url, "INSERT INTO editions (date, frozen_at, articles) VALUES ('weekly-2026-11-25', :now, '[]')",
                 now=now)
    open_store(url).dispose()  # every command upgrades to the head: 0012, rows kept
    key = "weekly-2026-11-25"
    rows(url, "INSERT INTO editions (date, frozen_at, articles) VALUES (:k, :now, '[]')", k=key, now=now)
    rows(url, "INSERT INTO ledger (edition, subscriber_id, email, name, status, attempts, updated_at, section_mask) "
              "VALUES (:k, 1, 'a@example.com', '', 'pending', 0, :now, 1)", k=key, now=now)
    assert sorted(rows(url, "SELECT edition, status FROM ledger")) == [("2026-11-25", "sent"), (key, "pending")]
    if ENGINE_NAME == "sqlite":
        [(schema,)] = rows(url, "SELECT sql FROM sqlite_master WHERE name = 'ledger'")
        assert "edition VARCHAR(20)" in schema
    with engine.begin() as conn:  # down again: the weekly rows go (they would not fit), the daily stay
        command.downgrade(_alembic_config(conn), "0011")
        assert conn.execute(text("SELECT edition FROM ledger")).all() == [("2026-11-25",)]
    engine.dispose()


# -- the weekly digest as values: selection and rendering, no store ------------------------------

def week_edition(per_day: int = 2):
    """Seven days of stories in every section, each day with a lead (world), with teasers,
    questions and images: a busy week."""
    from datetime import datetime, timezone

    from digest.articles import Article
    from digest.config import SECTIONS
    from digest.select import Edition, week_leads
    items = []
    for back in range(7):
        day = DAY - timedelta(days=back)
        t = datetime(day.year, day.month, day.day, 9, tzinfo=timezone.utc)
        items.append(Article(id=f"lead{back}", title=f"Lead {back} & <co>", url=f"https://x.example/l{back}",
                             published=t, sections=("world",), featured=True, question="Why now?",
                             body="The lead's teaser & more.", image="https://x.example/i.jpg", image_alt="A"))
        for s in SECTIONS:
            for i in range(per_day):
                items.append(Article(id=f"{s}{back}{i}", title=f"{s} story {back}.{i} " + "words " * 8,
                                     url=f"https://x.example/{s}/{back}/{i}", published=t, sections=(s,),
                                     priority=(back + i) % 4, question="What happened this time around?",
                                     body="A teaser sentence of a reasonable length. " * 4,
                                     image="https://x.example/t.jpg" if i % 2 else None))
    items.sort(key=lambda a: a.published)
    return Edition(DAY, tuple(items), weekly=True, leads=week_leads(items, SETTINGS.tz))


def test_assembled_weekly_digests_equal_a_full_render_and_stay_under_gmail_clipping():
    import random

    from digest.config import SECTIONS
    from digest.render import GMAIL_CLIP_BYTES, Renderer
    from digest.select import LEADS, select_digest
    edition = week_edition()
    assert [a.id for a in edition.leads] == [f"lead{b}" for b in range(7)]  # newest day first
    renderer = Renderer(SETTINGS)
    per_edition = renderer.edition(edition)
    rng = random.Random(3)
    for chosen in [tuple(rng.sample(SECTIONS, rng.randint(1, 13))) for _ in range(6)] + [("world",), SECTIONS]:
        digest = select_digest(edition, chosen, SETTINGS)
        assert digest.sections[0].name == LEADS and len(digest.sections[0].stories) == 7
        others = [a.id for b in digest.sections[1:] for a in b.stories]
        assert not set(others) & {a.id for a in edition.leads}  # leads are not repeated in their section
        assert all(len(b.stories) <= SETTINGS.weekly_per_section for b in digest.sections[1:])
        assembled, full = per_edition.render(digest), per_edition.full_render(digest)
        assert assembled == full, chosen
        assert len(assembled.html.encode("utf-8")) < GMAIL_CLIP_BYTES, chosen
    assert renderer.renders > 1


def test_the_weekly_subject_intro_and_lead_only_rule():
    from dataclasses import replace

    from digest.render import digest_values
    from digest.select import select_digest, story_mask
    edition = week_edition(per_day=1)
    digest = select_digest(edition, ("tech", "science"), SETTINGS)
    values = digest_values(digest, SETTINGS)
    assert values["subject"] == WEEKLY_SUBJECT
    assert values["intro"] == "This week\u2019s lead stories, then 10 more from Tech and Science."
    assert not digest.lead_only
    # Only the leads (nothing in the reader's sections): lead-only, as a daily digest with only its lead.
    quiet = replace(edition, articles=edition.leads)
    assert select_digest(quiet, ("tech",), SETTINGS).lead_only
    assert story_mask(quiet) is None and story_mask(quiet, lead_counts=False) == 0
