"""The editors' desk in a real browser: the installed `digest serve`, Playwright driving
Debian's chromium, keyboard only.  Screenshots of the edition, preview, check and test-send
pages at 375 px and 1280 px land in /tmp/shots/ (desk-*.png) to be looked at."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.web_helpers import ServedFolder

REPO = Path(__file__).resolve().parent.parent
SHOTS = Path("/tmp/shots")
DAY = "2026-11-25"
EDITOR, PASSWORD = "desk@news.example.com", "a long desk password"


class Desk(ServedFolder):
    """A `digest serve` with the sample day's stories and subscribers, and one editor."""

    def __init__(self, folder: Path):
        super().__init__(folder, secret="desk-browser-secret")


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    d = Desk(tmp_path_factory.mktemp("desk"))
    d.cli("articles", "import", str(REPO / "sample" / "articles" / DAY))
    d.cli("subscribers", "import", str(REPO / "sample" / "subscribers.csv"))
    d.cli("editors", "add", EDITOR, input=f"{PASSWORD}\n")
    d.serve.start().wait_ready("/digest/editor/sign-in")
    yield d
    d.serve.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def tab_to(page, selector: str, limit: int = 40) -> None:
    """Press Tab until the element matching `selector` has the focus (keyboard only)."""
    target = page.locator(selector).first
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            style = target.evaluate("el => getComputedStyle(el).outlineStyle")
            assert style != "none", f"{selector} has the focus but shows no outline"
            return
    pytest.fail(f"{selector} cannot be reached with Tab")


def sign_in(page, desk: Desk, path: str = "/editor") -> None:
    page.goto(f"{desk.base}{path}")
    expect(page).to_have_url(re.compile(r"/editor/sign-in\?next="))
    tab_to(page, "#email")
    page.keyboard.type(EDITOR)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_load_state()


def shoot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    for width in (375, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"desk-{name}-{width}.png"), full_page=True)
        page.screenshot(path=str(SHOTS / f"desk-{name}-{width}-top.png"))  # what one sees first
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"{name} at {width} px is {scroll} px wide: it scrolls sideways"
    page.set_viewport_size({"width": 1280, "height": 900})


def test_a_signed_out_visitor_gets_the_sign_in_form_and_a_wrong_password_is_refused(page, desk):
    for path in ("/editor", f"/editor/preview?date={DAY}", f"/editor/preview/email?date={DAY}"):
        page.goto(f"{desk.base}{path}")
        expect(page).to_have_url(re.compile(r"/editor/sign-in"))
        expect(page.locator("h1")).to_have_text("Sign in to the editors' desk")
    page.fill("#email", EDITOR)
    page.fill("#password", "not the password at all")
    page.press("#password", "Enter")
    expect(page.get_by_role("alert")).to_contain_text("do not match")
    expect(page).to_have_url(re.compile(r"/editor/sign-in"))
    shoot(page, "sign-in")


def test_sign_in_with_the_keyboard_see_the_edition_preview_withdraw_and_see_the_preview_change(page, desk):
    sign_in(page, desk, f"/editor?date={DAY}")
    expect(page).to_have_url(re.compile(rf"/editor\?date={DAY}$"))
    expect(page.locator("h1")).to_have_text("Edition of Wednesday 25 November 2026")
    expect(page.locator("#state")).to_contain_text("Live")
    lead = page.locator("#lead .story-title").inner_text()
    world = page.locator("section[aria-labelledby=section-world] .story-title")
    assert world.count() >= 2
    shoot(page, "edition")

    # Preview as a reader of World: the email in both frames, its text part, its inbox line.
    page.goto(f"{desk.base}/editor/preview?date={DAY}&sections=world")
    expect(page.locator(".inbox")).to_contain_text("Subject")
    frames = page.locator("iframe")
    assert frames.count() == 2 and frames.first.get_attribute("sandbox") == ""
    first_world = page.frame_locator("iframe").first
    expect(first_world.locator("body")).to_contain_text(lead)
    expect(page.frame_locator("iframe").nth(1).locator("body")).to_contain_text(lead)
    page.wait_for_timeout(1000)  # the frames are other processes (sandboxed): let them paint for the shots
    shoot(page, "preview")
    page.locator(".frames").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "desk-preview-1280-frames.png"))

    # Withdraw the first World story with the keyboard, then the preview no longer has it.
    page.goto(f"{desk.base}/editor?date={DAY}")
    story = page.locator("section[aria-labelledby=section-world] li.story").first
    title = story.locator(".story-title").inner_text()
    page.goto(f"{desk.base}/editor/preview?date={DAY}&sections=world")
    expect(page.frame_locator("iframe").first.locator("body")).to_contain_text(title)
    page.goto(f"{desk.base}/editor?date={DAY}")
    button = story.get_by_role("button", name=f"Withdraw {title}")
    button.focus()
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.locator("#withdrawn-heading")).to_be_visible()
    expect(page.locator("table.changes")).to_contain_text(EDITOR)
    expect(page.locator("table.changes")).to_contain_text("withdraw")
    page.goto(f"{desk.base}/editor/preview?date={DAY}&sections=world")
    expect(page.frame_locator("iframe").first.locator("body")).not_to_contain_text(title)
    expect(page.frame_locator("iframe").nth(1).locator("body")).not_to_contain_text(title)
    assert title not in page.locator(".frame.text pre").inner_text()

    # Sign out (a button), and the desk is closed again.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("signed out")
    page.goto(f"{desk.base}/editor?date={DAY}")
    expect(page).to_have_url(re.compile(r"/editor/sign-in"))


def test_open_check_and_send_a_test_with_the_keyboard(page, desk):
    sign_in(page, desk, f"/editor?date={DAY}")
    summary = page.locator("#check-line a").inner_text()
    assert re.fullmatch(r"(No problems|\d+ problems?), (no|\d+) notes? — see Check", summary), summary
    tab_to(page, "#check-line a")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page).to_have_url(re.compile(rf"/editor/check\?date={DAY}$"))
    expect(page.locator("h1")).to_have_text("Check of Wednesday 25 November 2026")
    expect(page.locator(".desk-nav a[aria-current=page]")).to_have_text("Check")
    expect(page.locator("#verdict")).to_be_visible()
    # The sample's store has no postal address: a problem of the settings, listed first.
    expect(page.locator(".findings.problems")).to_contain_text("no-postal-address")
    shoot(page, "check")

    # The menu's "Test send" opens the preview of everything at its form, prefilled.
    tab_to(page, ".desk-nav a:text-is('Test send')")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.locator("#test-to")).to_have_value(EDITOR)
    page.goto(f"{desk.base}/editor/preview?date={DAY}&sections=world")
    tab_to(page, "#test-to", limit=80)
    page.keyboard.press("Control+A")
    page.keyboard.type(f"{EDITOR}, someone@example.com")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.get_by_role("alert")).to_contain_text("not allowed to get test sends: someone@example.com")
    tab_to(page, "#test-to", limit=80)
    page.keyboard.press("Control+A")
    page.keyboard.type(EDITOR)
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    sent = page.locator("#test-sent")
    expect(sent).to_contain_text("[TEST] ")
    expect(sent).to_contain_text(f"to {EDITOR}, written to the outbox folder outbox/tests")
    expect(page.locator("h2#previewing")).to_have_text("Previewing as a reader of World")
    [eml] = (desk.folder / "outbox" / "tests").glob("*.eml")
    assert b"Subject: [TEST] " in eml.read_bytes()
    page.wait_for_timeout(1000)  # let the sandboxed frames paint for the shots
    shoot(page, "preview-test-send")
    for width in (375, 1280):  # the form and its outcome alone, at a size one can read
        page.set_viewport_size({"width": width, "height": 900})
        page.locator("#test-send").screenshot(path=str(SHOTS / f"desk-test-send-form-{width}.png"))
