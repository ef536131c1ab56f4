"""Shared fixtures: a settings object, a real store in a temp folder (a SQLite file, or a
PostgreSQL database on the PostgreSQL pass: tests/stores.py), the CLI two ways (Typer's
runner in-process, and the installed `digest` command in a subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest import store as digest_store
from digest.cli import app
from digest.config import load_settings
from digest.store import open_store
from tests import stores

REPO = Path(__file__).resolve().parent.parent
# The browser tests drive Debian's Chromium through Playwright (its own download is not used).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SAMPLE = REPO / "sample"
SAMPLE_DAY = "2026-11-25"
SECRET = "test-secret-key-not-for-production"


def digest_command() -> str:
    """The installed console script (the venv's, when tests run from it)."""
    beside = Path(sys.executable).parent / "digest"
    return str(beside) if beside.exists() else shutil.which("digest")


def pytest_report_header(config):
    return f"store engine: {stores.ENGINE_NAME}"


def pytest_collection_modifyitems(config, items):
    """Deselect (never skip) the tests of the other engine, so a plain `pytest` on either
    engine runs exactly the tests that apply to it, and a count of passes means something."""
    other = "sqlite_only" if stores.POSTGRES else "postgres_only"
    drop = [item for item in items if item.get_closest_marker(other)]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if not item.get_closest_marker(other)]


def pytest_sessionfinish(session):
    if stores.POSTGRES:
        stores.drop_all_stores()


@pytest.fixture(autouse=True)
def _store_cleanup(request):
    """On the PostgreSQL pass: drop the test's databases when it ends, and fail a test that
    made a SQLite file anyway (a URL built by hand instead of with stores.store_url)."""
    yield
    tmp = request.node.funcargs.get("tmp_path")
    if not stores.POSTGRES or tmp is None:
        return
    stores.drop_stores_under(tmp)
    if not request.node.get_closest_marker("sqlite_only"):
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*.db"))
        assert not files, f"the PostgreSQL pass made SQLite files {files}: build store URLs with tests.stores.store_url"


@pytest.fixture
def database_url(tmp_path) -> str:
    """The test's store: tmp_path/digest.db, or its PostgreSQL database on that pass."""
    return stores.store_url(tmp_path / "digest.db")


@pytest.fixture
def settings(database_url):
    return replace(load_settings(env={}), database_url=database_url,
                   secret_key=SECRET, base_url="https://news.example.com/digest")


@pytest.fixture
def engine(settings):
    return open_store(settings.database_url)


@pytest.fixture
def workdir(tmp_path, monkeypatch, database_url):
    """A temp working folder with a clean environment for the CLI."""
    monkeypatch.chdir(tmp_path)
    for var in list(os.environ):
        if var.startswith(("DIGEST_", "SENDGRID_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("DIGEST_DATABASE_URL", database_url)
    return tmp_path


class Runner:
    """Typer's CliRunner bound to our app; output and exit code in one result."""

    def __init__(self):
        self.runner = CliRunner()

    def __call__(self, *args, env=None, input=None):
        return self.runner.invoke(app, [str(a) for a in args], env=env, input=input, catch_exceptions=False)

    def json(self, *args, env=None):
        result = self(*args, env=env)
        return json.loads(result.stdout)


@pytest.fixture
def cli(workdir):
    return Runner()


@pytest.fixture
def run_digest(tmp_path, database_url):
    """Run the installed `digest` in a subprocess in `tmp_path`, with a clean environment."""
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "SENDGRID_"))}
    base_env["DIGEST_DATABASE_URL"] = database_url

    def run(*args, env=None, timeout=120, input=None):
        full_env = dict(base_env, **(env or {}))
        return subprocess.run([digest_command(), *map(str, args)], cwd=tmp_path, env=full_env, input=input,
                              capture_output=True, text=True, timeout=timeout)
    return run


def write_article(folder: Path, name: str, **fields) -> Path:
    """A Markdown story file; `body` is the Markdown after the front matter."""
    body = fields.pop("body", "A short machine-written summary.\n\n## Why it matters\n\nBecause.")
    fields.setdefault("title", name.replace("-", " ").capitalize())
    fields.setdefault("url", f"https://news.example.com/{name}")
    fields.setdefault("published", "2026-11-25T07:00:00Z")
    if "sections" not in fields:
        fields.setdefault("section", "world")
    lines = ["---"]
    for key, value in fields.items():
        shown = (json.dumps(value) if isinstance(value, (list, str))
                 else str(value).lower() if isinstance(value, bool) else value)
        lines.append(f"{key}: {shown}")
    lines += ["---", body, ""]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def write_lock(database_url, monkeypatch):
    """`write_lock()` makes another connection hold the write lock of the test's store (as a
    long import would) until the test ends; stores opened afterwards wait only 50 ms for it.

    SQLite: the file's one write lock (BEGIN IMMEDIATE).  PostgreSQL: every table locked
    against writes (EXCLUSIVE mode lets reads through, as SQLite's WAL does).
    """
    monkeypatch.setattr(digest_store, "BUSY_TIMEOUT_MS", 50)
    holders = []

    def take():
        if stores.POSTGRES:
            import psycopg
            holder = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"))
            holder.execute("LOCK TABLE " + ", ".join(digest_store.metadata.tables) + " IN EXCLUSIVE MODE")
        else:
            holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
        holders.append(holder)
        return holder  # holder.rollback() lets go early
    yield take
    for holder in holders:
        holder.rollback()
        holder.close()


@pytest.fixture
def site(tmp_path):
    """The web app on a new store, through Starlette's TestClient (tests/web_helpers.py)."""
    from tests.web_helpers import make_site
    return make_site(tmp_path)


def freeze_and_claim_everyone(engine, settings, day: str) -> None:
    """Freeze `day` with one lead story (so every active subscriber is in its audience) and
    claim every row, as a run that died mid-request leaves them."""
    from datetime import date, datetime, timezone

    from digest.articles import Article
    from digest.deliver import ledger
    from digest.edition import freeze
    from digest.select import Edition
    lead = Article(id="lead", title="Lead", url="https://news.example.com/lead", featured=True,
                   published=datetime(2026, 11, 25, 6, tzinfo=timezone.utc), sections=("world",))
    freeze(engine, Edition(date.fromisoformat(day), (lead,)), settings)
    from datetime import timedelta
    for mask in ledger.pending_masks(engine, day):  # by a sender elsewhere whose lease ran out
        ledger.claim_chunk(engine, day, mask, "gone-host:1:dead", lease_for=timedelta(seconds=-1))


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module (tests/test_browser.py, test_email_browser.py)."""
    from playwright.sync_api import sync_playwright
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: install Debian's chromium (make test does)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
