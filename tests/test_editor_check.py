"""The desk's Check page and test sends over HTTP (digest/web/editor.py): digest.check's
report at /editor/check and its summary on the edition page; the preview's "Send this as
a test to" form, through the strict SendGrid stand-in over real HTTP with the official
client (or the outbox), on a real store through Starlette's TestClient."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date

import pytest
from starlette.testclient import TestClient

from digest import editors, render
from digest.articles.importer import import_articles
from digest.edition import freeze, load_edition
from digest.web.app import create_app
from tests.conftest import write_article
from tests.fake_sendgrid import FakeSendGrid
from tests.stores import rows
from tests.web_helpers import hidden, make_site

DAY = "2026-11-25"
EDITOR, PASSWORD = "ed@news.example.com", "a long editor password"
OTHER_EDITOR = "sam@news.example.com"
DESK_LIST = "desk@news.example.org"  # [editors] test_recipients
DESK = "/digest/editor"


@pytest.fixture
def sg():
    with FakeSendGrid() as server:
        yield server


def stories(site, folder, *, http_link: bool = True, second_lead: bool = True) -> None:
    """A day with a lead, (unless told) a second featured story and a story linking over http."""
    write_article(folder, "lead", featured=True, section="world", priority=1, title="The <b>lead</b> story")
    write_article(folder, "second-lead", featured=second_lead, section="world", priority=5, title="Also featured")
    write_article(folder, "storm", section="world", priority=10, title="Storm warning")
    write_article(folder, "chips", sections=["tech", "science"], title="Chip news",
                  url="http://news.example.com/chips" if http_link else "https://news.example.com/chips")
    assert import_articles(site.engine, [folder], site.settings).rejected == []


def sign_in(client) -> None:
    page = client.get(f"{DESK}/sign-in")
    done = client.post(f"{DESK}/sign-in", data={"csrf": hidden(page.text, "csrf"), "email": EDITOR,
                                                "password": PASSWORD})
    assert done.status_code == 303


@pytest.fixture
def desk(tmp_path, sg):
    """The desk signed in, SendGrid pointed at the stand-in, two editors and a listed address;
    readers of World and of Tech."""
    site = make_site(tmp_path, sendgrid_api_key=sg.api_key, sendgrid_host=sg.url, test_recipients=(DESK_LIST,))
    editors.add(site.engine, EDITOR, PASSWORD)
    editors.add(site.engine, OTHER_EDITOR, PASSWORD)
    stories(site, tmp_path / "content")
    site.add("wendy@example.com", "Wendy", sections=("world",))
    site.add("tess@example.com", "Tess", sections=("tech",))
    sign_in(site.client)
    return site


def csrf(client) -> str:
    return hidden(client.get(f"{DESK}/preview?date={DAY}").text, "csrf")


def test_send(client, to, token=None, **who):
    data = {"csrf": csrf(client) if token is None else token, "date": DAY, "to": to, **who}
    return client.post(f"{DESK}/preview/test-send", data=data)


test_send.__test__ = False  # a helper, not a test


def ledger_and_editions(settings) -> tuple:
    return (rows(settings.database_url, "SELECT count(*) FROM ledger")[0][0],
            rows(settings.database_url, "SELECT count(*) FROM editions")[0][0])


def findings(html: str, heading: str) -> list[tuple[str, str]]:
    """(code, where) of each finding listed under the Problems or Notes heading."""
    part = html.split(f'id="{heading}-heading"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'<li class="finding" data-code="([a-z-]+)" data-where="([^"]*)">', part)


# -- signed out, CSRF ----------------------------------------------------------------------------

def test_signed_out_the_check_page_and_test_sends_are_refused(desk, sg):
    signed_out = TestClient(desk.client.app, follow_redirects=False)
    page = signed_out.get(f"{DESK}/check?date={DAY}")
    assert page.status_code == 303
    assert page.headers["location"] == f"{DESK}/sign-in?next=%2Fdigest%2Feditor%2Fcheck%3Fdate%3D{DAY}"
    refused = signed_out.post(f"{DESK}/preview/test-send", data={"date": DAY, "to": EDITOR})
    assert refused.status_code == 403
    # Another session's CSRF value does not open it either.
    refused = signed_out.post(f"{DESK}/preview/test-send", data={"csrf": csrf(desk.client), "date": DAY, "to": EDITOR})
    assert refused.status_code == 403
    assert sg.requests == [] and ledger_and_editions(desk.settings) == (0, 0)


def test_a_test_send_needs_the_sessions_csrf_value_and_this_site(desk, sg):
    client = desk.client
    assert test_send(client, EDITOR, token="").status_code == 403
    assert test_send(client, EDITOR, token="f" * 64).status_code == 403
    good = csrf(client)
    assert client.post(f"{DESK}/preview/test-send", data={"csrf": good, "date": DAY, "to": EDITOR},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    assert sg.requests == []
    assert test_send(client, EDITOR, token=good).status_code == 200  # the same form, from here: sent
    assert len(sg.deliveries_to(EDITOR)) == 1


# -- the check page --------------------------------------------------------------------------

def test_the_check_page_lists_the_planted_problems_first_then_the_notes_with_where(desk):
    page = desk.client.get(f"{DESK}/check?date={DAY}")
    html = page.text
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "<h1>Check of Wednesday 25 November 2026</h1>" in html
    problems, notes = findings(html, "problems"), findings(html, "notes")
    # The http:// link is the story's; the test site has no postal address and an http base URL.
    assert ("link-not-https", "chips") in problems
    assert ("no-postal-address", "settings") in problems and ("no-base-url", "settings") in problems
    assert ("two-featured", "lead") in problems and ("two-featured", "lead") not in notes  # the lead is named
    assert html.index('id="problems-heading"') < html.index('id="notes-heading"')
    assert "a link is not an absolute https URL: http://news.example.com/chips" in html
    assert re.search(r'<span class="where-kind">Story:</span> chips', html)
    assert '<span class="where"><span class="where-kind">Settings</span></span>' in html
    assert f"{len(problems)} problems.</strong>" in html and "would not send it" in html
    # Nobody follows Science or the rest: a note names the section, the report the digests.
    assert "for 2 active subscribers" in html and "3 digests checked" in html
    # The day picker, as on the other desk pages.
    assert f'href="{DESK}/check?date=2026-11-24"' in html and f'href="{DESK}/check?date=2026-11-26"' in html
    bad = desk.client.get(f"{DESK}/check?date=2026-02-30")
    assert bad.status_code == 400 and "is not a day like" in bad.text


def test_the_report_is_the_cli_reports_and_escaped(desk, run_digest, tmp_path):
    """The page lists exactly the findings `digest check --json` gives for the same store."""
    import json
    env = {"DIGEST_BASE_URL": desk.settings.base_url, "DIGEST_SECRET_KEY": desk.settings.secret_key}
    done = run_digest("check", "--date", DAY, "--json", env=env)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    html = desk.client.get(f"{DESK}/check?date={DAY}").text
    assert findings(html, "problems") == [(f["code"], f["where"]) for f in report["problems"]]
    assert findings(html, "notes") == [(f["code"], f["where"]) for f in report["notes"]]
    assert "<b>" not in html.split("<main", 1)[1]


def test_the_edition_page_has_the_one_line_summary_and_a_clean_day_says_no_problems(tmp_path):
    site = make_site(tmp_path, base_url="https://news.example.com/digest", postal_address="1 Example Street")
    editors.add(site.engine, EDITOR, PASSWORD)
    stories(site, tmp_path / "content", http_link=False, second_lead=False)
    site.add("wendy@example.com", sections=("world",))
    client = TestClient(create_app(site.settings, site.engine), base_url="https://news.example.com",
                        follow_redirects=False, headers={"Origin": "https://news.example.com"})
    sign_in(client)
    check = client.get(f"{DESK}/check?date={DAY}").text
    assert "<strong>No problems.</strong>" in check and findings(check, "problems") == []
    notes = findings(check, "notes")
    edition = client.get(f"{DESK}?date={DAY}").text
    line = re.search(r'<p class="check-line[^"]*" id="check-line"><a href="([^"]+)">([^<]+)</a>', edition)
    assert line and line.group(1) == f"{DESK}/check?date={DAY}"
    counted = "no notes" if not notes else f"{len(notes)} note{'' if len(notes) == 1 else 's'}"
    assert line.group(2) == f"No problems, {counted} — see Check"
    # A day with no stories: the check's one problem.
    empty = client.get(f"{DESK}?date=2026-11-20").text
    assert "1 problem, no notes — see Check" in empty
    assert ("no-stories", "edition") in findings(client.get(f"{DESK}/check?date=2026-11-20").text, "problems")


def test_the_report_is_rendered_once_per_state_not_per_request(desk, monkeypatch):
    renders = []
    real = render.Renderer.mjml
    monkeypatch.setattr(render.Renderer, "mjml", lambda self, ctx: renders.append(1) or real(self, ctx))
    client = desk.client
    first = client.get(f"{DESK}/check?date={DAY}").text
    once = len(renders)
    assert once >= 1 and ("link-not-https", "chips") in findings(first, "problems")
    edition = client.get(f"{DESK}?date={DAY}").text
    problems = len(findings(first, "problems"))
    assert f"{problems} problems, " in edition
    client.get(f"{DESK}/check?date={DAY}")
    assert len(renders) == once  # the edition page and a second visit: the kept report
    # A curation is a new state: the report follows it (the http story withdrawn).
    withdraw = client.post(f"{DESK}/curate", data={"csrf": csrf(client), "date": DAY, "story": "chips",
                                                   "action": "withdraw", "section": ""})
    assert withdraw.status_code == 303
    after = client.get(f"{DESK}/check?date={DAY}").text
    assert len(renders) > once and ("link-not-https", "chips") not in findings(after, "problems")
    # So is a change of audience.
    before = len(renders)
    desk.add("sci@example.com", sections=("science",))
    assert "for 3 active subscribers" in client.get(f"{DESK}/check?date={DAY}").text and len(renders) > before


# -- test sends ------------------------------------------------------------------------------

def test_the_form_is_prefilled_with_the_editors_address_and_offers_the_allow_list(desk):
    html = desk.client.get(f"{DESK}/preview?date={DAY}&sections=tech").text
    form = html.split('id="test-send"', 1)[1].split("</form>", 1)[0]
    assert f'name="to" value="{EDITOR}"' in form
    assert f"Only these may get test sends: {DESK_LIST}, {EDITOR}, {OTHER_EDITOR}." in form
    assert 'name="sections" value="tech"' in form and 'name="csrf"' in form
    person = desk.client.get(f"{DESK}/preview?date={DAY}&subscriber=tess@example.com").text
    assert 'name="subscriber" value="tess@example.com"' in person.split('id="test-send"', 1)[1]
    # The nav's "Test send" opens the preview at the form.
    assert f'<a href="{DESK}/preview?date={DAY}#test-send">Test send</a>' in html
    assert f'<a href="{DESK}/check?date={DAY}">Check</a>' in html  # the menu stays on the page's day


def test_a_test_send_arrives_with_the_test_subject_and_the_previews_html(desk, sg):
    client = desk.client
    page = client.get(f"{DESK}/preview?date={DAY}&sections=tech")
    frame = re.search(r'<iframe src="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    shown = client.get(frame).text
    subject = re.search(r"<dt>Subject</dt><dd>([^<]+)</dd>", page.text).group(1).replace("&lt;", "<") \
        .replace("&gt;", ">")
    done = test_send(client, f"{EDITOR}, {DESK_LIST.upper()}", sections="tech")
    assert done.status_code == 200, done.text
    for address in (EDITOR, DESK_LIST.upper()):
        [got] = sg.deliveries_to(address)
        assert got["subject"] == "[TEST] " + subject
        assert got["html"] == shown  # the very message of the preview's frames
        assert "\nTECH\n" in got["text"] and "WORLD" not in got["text"]
    [request] = sg.requests
    assert request["status"] == 202
    said = re.search(r'<div class="notice ok" role="status" id="test-sent"><p>(.*?)</p>', done.text).group(1)
    assert said == (f"<strong>Test sent:</strong> “[TEST] The Daily Digest, Wed 25 Nov: The &lt;b&gt;lead&lt;/b&gt; "
                    f"story” to {EDITOR}, {DESK_LIST.upper()}, through SendGrid. No ledger row, nothing frozen.")
    assert ledger_and_editions(desk.settings) == (0, 0)  # no ledger row, nothing frozen
    # The page is still the preview of Tech, the addresses kept in the field.
    assert "Previewing as a reader of Tech" in done.text
    assert f'name="to" value="{EDITOR}, {DESK_LIST.upper()}"' in done.text


def test_a_test_of_a_readers_digest_is_their_preview_with_links_of_nobody(desk, sg):
    client = desk.client
    page = client.get(f"{DESK}/preview?date={DAY}&subscriber=tess@example.com").text
    frame = re.search(r'<iframe src="([^"]+)"', page).group(1).replace("&amp;", "&")
    shown = client.get(frame).text
    assert test_send(client, EDITOR, subscriber="tess@example.com").status_code == 200
    [got] = sg.deliveries_to(EDITOR)
    assert "Good morning, Tess" in got["text"] and got["subject"].startswith("[TEST] ")
    token = re.compile(r"/unsubscribe/([^\"?&\s]+)")
    previewed, sent = token.search(shown).group(1), token.search(got["html"]).group(1)
    assert previewed != sent  # the test's links are subscriber 0's, who is nobody
    assert shown.replace(previewed, sent) == got["html"]
    tess = desk.get("tess@example.com")
    assert desk.token(tess) not in got["html"] + got["text"]


def test_a_refused_address_is_named_on_the_page_and_nothing_is_sent(desk, sg):
    client = desk.client
    done = test_send(client, f"{EDITOR}, wendy@example.com, <script>x@evil.example", sections="world")
    assert done.status_code == 400
    alert = re.search(r'<div class="notice error" role="alert"><p>(.*?)</p>', done.text).group(1)
    assert alert.startswith("Nothing was sent: not allowed to get test sends: wendy@example.com, "
                            "&lt;script&gt;x@evil.example (test sends go only to")
    assert "<script>x" not in done.text and "Traceback" not in done.text
    assert 'aria-invalid="true"' in done.text
    assert test_send(client, " , ").status_code == 400  # no address at all
    assert "Nothing was sent: no address to send the test to" in test_send(client, "").text
    long = test_send(client, EDITOR + "," * 3000)
    assert long.status_code == 400 and "at most 2,000" in long.text
    assert sg.requests == [] and ledger_and_editions(desk.settings) == (0, 0)


def test_what_sendgrid_refuses_is_said_on_the_page(desk, sg):
    sg.inject("400", message="The from address does not match a verified Sender Identity")
    done = test_send(desk.client, EDITOR)
    assert done.status_code == 502 and "Test sent" not in done.text
    assert (f"<li>{EDITOR}: failed, SendGrid rejected the request (HTTP 400): The from address does not match "
            "a verified Sender Identity</li>") in done.text
    # An API key SendGrid refuses: nothing sent, said on the page.
    wrong = TestClient(create_app(replace(desk.settings, sendgrid_api_key="SG.wrong"), desk.engine),
                       follow_redirects=False)
    sign_in(wrong)
    refused = test_send(wrong, EDITOR)
    assert refused.status_code == 502 and "Nothing was sent: " in refused.text
    assert "refused the API key" in refused.text and "SG.wrong" not in refused.text
    assert ledger_and_editions(desk.settings) == (0, 0)


def test_a_frozen_edition_can_be_tested_and_gains_no_ledger_row(desk, sg):
    engine, settings = desk.engine, desk.settings
    freeze(engine, load_edition(engine, date(2026, 11, 25), settings), settings)
    before = ledger_and_editions(settings)
    assert before == (2, 1)
    assert test_send(desk.client, EDITOR, sections="world").status_code == 200
    assert len(sg.deliveries_to(EDITOR)) == 1
    assert ledger_and_editions(settings) == before
    assert rows(settings.database_url, "SELECT DISTINCT status FROM ledger") == [("pending",)]


def test_without_an_api_key_the_test_goes_to_the_outbox_and_the_page_says_where(tmp_path):
    site = make_site(tmp_path)
    editors.add(site.engine, EDITOR, PASSWORD)
    stories(site, tmp_path / "content")
    sign_in(site.client)
    done = test_send(site.client, EDITOR)
    assert done.status_code == 200, done.text
    folder = tmp_path / "outbox" / "tests"
    assert f"written to the outbox folder <code>{folder}</code>" in done.text
    [eml] = folder.glob("*.eml")
    assert b"Subject: [TEST] The Daily Digest" in eml.read_bytes()
    assert ledger_and_editions(site.settings) == (0, 0)
