"""The real `digest serve` in a real browser: Playwright driving Debian's chromium.

The emails come from a real dry run, the server is the installed `digest` command, and
every check on the store goes through `digest subscribers list --json`.  Screenshots of
each page at 375 px and 1280 px land in /tmp/shots/ to be looked at.  Missing chromium is
a failure, not a skip: `make test` installs it.
"""

from __future__ import annotations

import json
import urllib.request
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.web_helpers import ServedFolder, html_part, link_in

SAMPLE = Path(__file__).resolve().parent.parent / "sample" / "articles"
SHOTS = Path("/tmp/shots")
DAY = "2026-11-25"
WIDTHS = (375, 1280)


class Server(ServedFolder):
    """A `digest serve` process with its own folder, database and environment."""

    def start(self) -> None:
        self.serve.start().wait_ready("/digest/subscribe")

    def stop(self) -> None:
        self.serve.stop()

    def subscriber(self, email: str) -> dict:
        people = json.loads(self.cli("subscribers", "list", "--json"))
        return next(p for p in people if p["email"] == email)

    def dry_run_email(self, email: str) -> Path:
        """Send the day's digest as a dry run; the .eml written for `email`."""
        outbox = self.folder / "outbox" / email
        self.cli("send", "--dry-run", "--date", DAY, "--outbox", str(outbox))
        return outbox / f"{email}.eml"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("serve"))
    s.cli("articles", "import", str(SAMPLE))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def screenshots(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_preference_link_from_a_dry_run_email(server, page):
    server.cli("subscribers", "add", "pat@example.com", "--name", "Pat", "--sections", "world,tech")
    link = link_in(html_part(server.dry_run_email("pat@example.com")), "preferences")
    assert link.startswith(f"{server.base}/preferences/")

    page.goto(link)
    boxes = page.locator('input[type="checkbox"][name="sections"]')
    expect(boxes).to_have_count(13)
    expect(page.get_by_label("World")).to_be_checked()
    expect(page.get_by_label("Science")).not_to_be_checked()
    screenshots(page, "preferences")

    page.get_by_label("World").uncheck()  # by label: every box is labelled
    page.get_by_label("Science").check()
    page.get_by_label("Food").check()
    page.get_by_label("Your name").fill("Pat <Q>")
    page.get_by_label("Pause for now").check()
    page.get_by_role("button", name="Save my settings").click()
    expect(page.get_by_role("heading", name="Saved")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Tech, Science, Food")
    screenshots(page, "preferences-saved")

    pat = server.subscriber("pat@example.com")
    assert (pat["sections"], pat["name"], pat["status"]) == (["tech", "science", "food"], "Pat <Q>", "paused")

    # Focus is visible when tabbing (an outline, not just the browser's default).
    page.keyboard.press("Tab")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"

    response = page.goto(link[:-4])  # truncated in the mail client
    assert response.status == 404
    expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()
    assert server.subscriber("pat@example.com")["status"] == "paused"


def test_unsubscribe_page_and_one_click(server, page):
    server.cli("subscribers", "add", "una@example.com", "--sections", "sports")
    eml = server.dry_run_email("una@example.com")
    raw_headers = eml.read_bytes().split(b"\r\n\r\n", 1)[0].decode()
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw_headers
    header = message_from_bytes(eml.read_bytes(), policy=policy.default)["List-Unsubscribe"]
    url = header.strip("<>")
    assert url == link_in(html_part(eml), "unsubscribe")  # the visible link leads there too

    page.goto(url)
    expect(page.get_by_role("button", name="Unsubscribe")).to_be_visible()
    expect(page.get_by_role("link", name="change your settings")).to_be_visible()
    screenshots(page, "unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    screenshots(page, "unsubscribed")
    assert server.subscriber("una@example.com")["status"] == "unsubscribed"

    page.get_by_role("button", name="Resubscribe").click()
    expect(page.get_by_role("heading", name="Saved")).to_be_visible()
    una = server.subscriber("una@example.com")
    assert (una["status"], una["sections"]) == ("active", ["sports"])

    # What Gmail's servers do (RFC 8058): a bare POST, no cookies, no form token. Twice is fine.
    for _ in range(2):
        request = urllib.request.Request(url, data=b"List-Unsubscribe=One-Click", method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200
    una = server.subscriber("una@example.com")
    assert (una["status"], una["reason"]) == ("unsubscribed", "one-click unsubscribe")


def test_signup_with_double_opt_in(server, page):
    page.goto(f"{server.base}/subscribe")
    screenshots(page, "subscribe")
    page.get_by_label("Email address").fill("not an address")
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator("#email-error")).to_contain_text("like name@example.com")
    expect(page.get_by_label("Email address")).to_have_attribute("aria-invalid", "true")
    screenshots(page, "subscribe-error")

    page.get_by_label("Email address").fill("Sia@Example.com")
    page.get_by_label("Your name").fill("Sia")
    page.get_by_label("Travel").check()
    page.get_by_label("Gaming").check()
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    screenshots(page, "check-inbox")
    assert server.subscriber("Sia@example.com")["status"] == "pending"

    [eml] = sorted((server.folder / "outbox" / "signups").glob("*sia@example.com.eml"))
    page.goto(link_in(html_part(eml), "confirm"))
    # Opening the link (as mail scanners do) confirms nothing: a person presses the button.
    expect(page.get_by_role("heading", name="Confirm your subscription")).to_be_visible()
    screenshots(page, "confirm")
    assert server.subscriber("Sia@example.com")["status"] == "pending"
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", name="You are subscribed")).to_be_visible()
    screenshots(page, "confirmed")
    sia = server.subscriber("Sia@example.com")
    assert (sia["status"], sia["sections"], sia["name"]) == ("active", ["travel", "gaming"], "Sia")

    page.get_by_role("link", name="Choose your sections").click()
    expect(page.get_by_label("Travel")).to_be_checked()

    # The link is single use: opened again, it has nothing left to do.
    page.goto(link_in(html_part(eml), "confirm"))
    expect(page.get_by_role("heading", name="Nothing to confirm")).to_be_visible()
    screenshots(page, "confirm-used")


# -- the delivery time: zone, hour, daily or weekly, pause ---------------------------------------

def preference_link(server, email: str) -> str:
    return link_in(html_part(server.dry_run_email(email)), "preferences")


def test_choosing_a_zone_hour_and_weekly_digest_then_pausing_and_resuming_without_javascript(server, browser):
    server.cli("subscribers", "add", "kim@example.com", "--sections", "world")
    link = preference_link(server, "kim@example.com")
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900},
                                  timezone_id="Asia/Tokyo")
    page = context.new_page()
    try:
        page.goto(link)
        # The newsletter's zone and hour are shown until the reader picks their own.
        expect(page.get_by_label("Time zone")).to_have_value("UTC")
        expect(page.get_by_label("Hour")).to_have_value("7")
        expect(page.locator("#zone-suggestion")).to_be_hidden()  # no script, no suggestion
        assert page.locator('#timezone optgroup[label="Asia"] option[value="Asia/Tokyo"]').count() == 1
        assert page.locator('#timezone option[value="US/Eastern"]').count() == 0  # canonical names only

        page.get_by_label("Time zone").select_option("America/Argentina/Buenos_Aires")
        page.get_by_label("Hour").select_option(label="18:00")
        page.get_by_label("Once a week, on").check()
        page.get_by_label("Day of the week").select_option(label="Friday")
        page.get_by_role("button", name="Save my settings").click()
        expect(page.get_by_role("status")).to_contain_text("every Friday at 18:00, America/Argentina/Buenos Aires time")
        kim = server.subscriber("kim@example.com")
        assert (kim["timezone"], kim["hour"], kim["cadence"], kim["weekday"]) == \
            ("America/Argentina/Buenos_Aires", 18, "weekly", "friday")
        assert "paused_until" not in kim

        page.get_by_label("Or pause until").fill("2099-01-31")
        page.get_by_role("button", name="Save my settings").click()
        expect(page.get_by_role("status")).to_contain_text("paused until Saturday 31 January 2099")
        assert server.subscriber("kim@example.com")["paused_until"] == "2099-01-31"
        page.goto(link)
        expect(page.locator(".state")).to_contain_text("Paused until Saturday 31 January 2099")
        expect(page.get_by_label("Or pause until")).to_have_value("2099-01-31")
        screenshots(page, "preferences-paused")

        page.get_by_role("button", name="Resume now").click()
        expect(page.get_by_role("status")).to_contain_text("Resumed: you get the digest every Friday at 18:00")
        kim = server.subscriber("kim@example.com")
        assert "paused_until" not in kim and kim["status"] == "active" and kim["cadence"] == "weekly"
        expect(page.get_by_role("button", name="Resume now")).to_have_count(0)
    finally:
        context.close()


def test_the_browsers_zone_is_only_a_suggestion_until_saved(server, browser):
    server.cli("subscribers", "add", "yuki@example.com", "--sections", "tech")
    link = preference_link(server, "yuki@example.com")
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Asia/Tokyo")
    page = context.new_page()
    try:
        page.goto(link)
        suggestion = page.locator("#zone-suggestion")
        expect(suggestion).to_be_visible()
        expect(suggestion).to_contain_text("Your browser says Asia/Tokyo")
        expect(page.get_by_label("Time zone")).to_have_value("UTC")  # nothing chosen for them
        screenshots(page, "preferences-delivery")
        assert "timezone" not in server.subscriber("yuki@example.com")

        page.get_by_role("button", name="use it").click()
        expect(page.get_by_label("Time zone")).to_have_value("Asia/Tokyo")
        expect(suggestion).to_contain_text("save your settings to keep it")
        assert "timezone" not in server.subscriber("yuki@example.com")  # still nothing stored
        page.get_by_role("button", name="Save my settings").click()
        expect(page.get_by_role("status")).to_contain_text("every day at 07:00, Asia/Tokyo time")
        assert server.subscriber("yuki@example.com")["timezone"] == "Asia/Tokyo"
        page.goto(link)
        expect(suggestion).to_be_hidden()  # the browser agrees now: nothing to suggest
    finally:
        context.close()


def test_a_browser_reporting_an_old_zone_name_is_offered_its_place(server, browser):
    server.cli("subscribers", "add", "ravi@example.com", "--sections", "tech")
    context = browser.new_context(timezone_id="Asia/Calcutta")
    page = context.new_page()
    try:
        page.goto(preference_link(server, "ravi@example.com"))
        expect(page.locator("#zone-suggestion")).to_contain_text("Your browser says Asia/Kolkata")
    finally:
        context.close()
