"""The editors' desk over HTTP (digest/web/editor.py, sessions.py): sign-in, lock-out, the
session cookie, CSRF, the edition page and its curation, preview as anyone.  The app runs
on a real store through Starlette's TestClient (tests/web_helpers.py)."""

from __future__ import annotations

import re
from datetime import date
from http.cookies import SimpleCookie

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from digest import editors
from digest.articles.curation import changes
from digest.articles.importer import import_articles
from digest.edition import freeze, load_edition
from digest.web.app import create_app
from tests.conftest import write_article
from tests.web_helpers import hidden, make_site

DAY = "2026-11-25"
EDITOR, PASSWORD = "ed@news.example.com", "a long editor password"
DESK = "/digest/editor"


@pytest.fixture
def desk(tmp_path):
    site = make_site(tmp_path)
    editors.add(site.engine, EDITOR, PASSWORD)
    folder = tmp_path / "content"
    write_article(folder, "lead", featured=True, section="world", title="The <b>lead</b> story")
    write_article(folder, "storm", section="world", priority=10, title="Storm warning")
    write_article(folder, "quake", section="world", priority=20, title="Quake drill")
    write_article(folder, "chips", sections=["tech", "science"], title="Chip news")
    assert import_articles(site.engine, [folder], site.settings).rejected == []
    site.add("wendy@example.com", sections=("world",))
    site.add("tess@example.com", sections=("tech", "world"))
    site.add("dee@example.com")  # the defaults: every section
    site.add("paula@example.com", sections=("science",), status="paused")
    return site


def sign_in_form(client) -> str:
    page = client.get(f"{DESK}/sign-in")
    assert page.status_code == 200
    return hidden(page.text, "csrf")


def sign_in(client, email=EDITOR, password=PASSWORD, **extra):
    return client.post(f"{DESK}/sign-in", data={"csrf": sign_in_form(client), "email": email,
                                                "password": password, **extra})


@pytest.fixture
def signed_in(desk):
    assert sign_in(desk.client).status_code == 303
    return desk


def csrf(client) -> str:
    return hidden(client.get(f"{DESK}?date={DAY}").text, "csrf")


def curate(client, action, story, section="", token=None, **headers):
    data = {"csrf": csrf(client) if token is None else token, "date": DAY, "story": story,
            "section": section, "action": action}
    return client.post(f"{DESK}/curate", data=data, headers=headers)


def desk_routes(client) -> list[Route]:
    return [r for r in client.app.routes if isinstance(r, Route) and r.path.startswith(DESK)]


# -- signed out ------------------------------------------------------------------------------

def test_every_desk_route_but_the_sign_in_form_is_closed_when_signed_out(desk):
    routes = desk_routes(desk.client)
    assert {r.path for r in routes} >= {DESK, f"{DESK}/sign-in", f"{DESK}/sign-out", f"{DESK}/curate",
                                        f"{DESK}/preview", f"{DESK}/preview/email"}
    for route in routes:
        if route.path == f"{DESK}/sign-in":
            continue
        for method in route.methods - {"HEAD"}:
            answer = desk.client.request(method, f"{route.path}?date={DAY}", data={"action": "withdraw",
                                                                                     "story": "storm"})
            if method == "GET":
                assert answer.status_code == 303, route.path
                assert answer.headers["location"].startswith(f"{DESK}/sign-in?next=")
            else:
                assert answer.status_code == 403, (method, route.path)
    assert changes(desk.engine, ["storm"]) == []


def test_a_tampered_or_foreign_cookie_is_no_session(signed_in):
    client = signed_in.client
    cookie = next(c for c in client.cookies.jar if c.name == "digest-editor")
    good = cookie.value
    client.cookies.clear()
    for bad in (good[:-2] + ("AA" if not good.endswith("AA") else "BB"), good.replace(".", "x", 1), "junk"):
        client.cookies.set("digest-editor", bad, path=DESK)
        assert client.get(DESK).status_code == 303
        client.cookies.clear()
    # Signed with another site's key: refused too.
    other = TestClient(create_app(signed_in.settings.__class__(**{**signed_in.settings.__dict__,
                                                                 "secret_key": "another-site-key"}),
                                  signed_in.engine), follow_redirects=False)
    sign_in(other)
    foreign = next(c for c in other.cookies.jar if c.name == "digest-editor").value
    client.cookies.set("digest-editor", foreign, path=DESK)
    assert client.get(DESK).status_code == 303


def test_a_removed_editor_is_signed_out_at_the_next_request(signed_in):
    assert signed_in.client.get(DESK).status_code == 200
    editors.remove(signed_in.engine, EDITOR)
    assert signed_in.client.get(DESK).status_code == 303


# -- signing in ------------------------------------------------------------------------------

def test_signing_in_sets_a_strict_http_only_cookie_for_the_desk_only(desk):
    before = desk.client.get(f"{DESK}/sign-in")
    done = sign_in(desk.client, next=f"{DESK}/preview?date={DAY}")
    assert done.status_code == 303 and done.headers["location"] == f"{DESK}/preview?date={DAY}"
    jar = SimpleCookie(done.headers["set-cookie"])
    morsel = jar["digest-editor"]
    assert morsel["httponly"] and morsel["samesite"].lower() == "strict" and morsel["path"] == DESK
    assert not morsel["secure"]  # http base URL (tests); https below
    assert int(morsel["max-age"]) == 12 * 3600
    # A new session at sign-in: the cookie of the sign-in form is not the one signed in.
    assert SimpleCookie(before.headers["set-cookie"])["digest-editor"].value != morsel.value
    assert desk.client.get(DESK).status_code == 200


def test_with_an_https_base_url_the_cookie_is_secure(tmp_path):
    site = make_site(tmp_path, base_url="https://news.example.com/digest")
    editors.add(site.engine, EDITOR, PASSWORD)
    client = TestClient(create_app(site.settings, site.engine), base_url="https://news.example.com",
                        follow_redirects=False)
    page = client.get(f"{DESK}/sign-in")
    done = client.post(f"{DESK}/sign-in", data={"csrf": hidden(page.text, "csrf"), "email": EDITOR,
                                                "password": PASSWORD},
                       headers={"Origin": "https://news.example.com"})
    assert done.status_code == 303
    morsel = SimpleCookie(done.headers["set-cookie"])["__Secure-digest-editor"]
    assert morsel["secure"] and morsel["httponly"] and morsel["path"] == DESK


def test_a_wrong_password_and_an_unknown_address_read_the_same(desk):
    wrong = sign_in(desk.client, password="not the right one")
    unknown = sign_in(desk.client, email="nobody@news.example.com")
    for answer in (wrong, unknown):
        assert answer.status_code == 400 and "do not match an editor" in answer.text
        assert "digest-editor" not in str(answer.headers.get("location", ""))
    assert desk.client.get(DESK).status_code == 303


def test_five_wrong_passwords_lock_the_account(desk):
    for _ in range(editors.MAX_FAILURES - 1):
        assert sign_in(desk.client, password="not the right one").status_code == 400
    locked = sign_in(desk.client, password="not the right one")
    assert locked.status_code == 429 and "locked for 15 more minutes" in locked.text
    assert locked.headers["retry-after"] == "900"
    right = sign_in(desk.client)
    assert right.status_code == 429 and desk.client.get(DESK).status_code == 303


def test_the_sign_in_form_needs_its_csrf_value(desk):
    desk.client.get(f"{DESK}/sign-in")
    refused = desk.client.post(f"{DESK}/sign-in", data={"email": EDITOR, "password": PASSWORD})
    assert refused.status_code == 403
    bad = desk.client.post(f"{DESK}/sign-in", data={"csrf": "0" * 64, "email": EDITOR, "password": PASSWORD})
    assert bad.status_code == 403 and desk.client.get(DESK).status_code == 303


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/digest/preferences/x",
                                    "/digest/editorial", "\\\\evil.example"])
def test_after_signing_in_only_a_desk_page_is_a_destination(desk, target):
    done = sign_in(desk.client, next=target)
    assert done.headers["location"] == DESK


def test_sign_out_is_a_post_with_the_csrf_value(signed_in):
    client = signed_in.client
    assert client.post(f"{DESK}/sign-out", data={}).status_code == 403
    assert client.get(DESK).status_code == 200
    out = client.post(f"{DESK}/sign-out", data={"csrf": csrf(client)})
    assert out.status_code == 303 and out.headers["location"] == f"{DESK}/sign-in?signed-out"
    assert client.get(DESK).status_code == 303


def test_signing_out_ends_the_session_everywhere_not_only_the_cookie(signed_in):
    client = signed_in.client
    copied = next(c for c in client.cookies.jar if c.name == "digest-editor").value
    laptop = TestClient(client.app, follow_redirects=False)
    assert sign_in(laptop).status_code == 303 and laptop.get(DESK).status_code == 200
    assert client.post(f"{DESK}/sign-out", data={"csrf": csrf(client)}).status_code == 303
    client.cookies.set("digest-editor", copied, path=DESK)  # a copy of the cookie, replayed
    assert client.get(DESK).status_code == 303
    assert laptop.get(DESK).status_code == 303  # the other device's session ended too
    client.cookies.clear()  # (the test's hand-set copy would sit beside the server's cookie)
    assert sign_in(client).status_code == 303 and client.get(DESK).status_code == 200


# -- the edition page ---------------------------------------------------------------------------

def test_desk_pages_are_not_stored_and_framed_only_by_the_desk(signed_in, desk):
    signed_out = TestClient(desk.client.app, follow_redirects=False)
    for client, path in ((signed_in.client, f"{DESK}?date={DAY}"), (signed_in.client, f"{DESK}/preview?date={DAY}"),
                         (signed_out, f"{DESK}/sign-in")):
        page = client.get(path)
        assert page.status_code == 200, path
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-frame-options"] == "SAMEORIGIN"
        assert "frame-ancestors 'self'" in page.headers["content-security-policy"]


def test_the_edition_page_shows_the_lead_the_sections_in_order_and_their_readers(signed_in):
    page = signed_in.client.get(f"{DESK}?date={DAY}")
    html = page.text
    assert "The &lt;b&gt;lead&lt;/b&gt; story" in html and "<b>lead</b>" not in html  # escaped
    assert html.index("Storm warning") < html.index("Quake drill")  # priority 10 before 20
    # Active readers per section, one GROUP BY: World = wendy, tess, dee; Tech = tess, dee;
    # Science = dee (paula is paused).
    assert re.search(r'id="section-world">World <span class="hint">3 readers', html)
    assert re.search(r'id="section-tech">Tech <span class="hint">2 readers', html)
    assert re.search(r'id="section-science">Science <span class="hint">1 reader<', html)
    assert "3 active readers" in html and "Live." in html
    assert f'href="{DESK}?date=2026-11-24"' in html and f'href="{DESK}?date=2026-11-26"' in html
    bad = signed_in.client.get(f"{DESK}?date=2026-13-01")
    assert bad.status_code == 400 and "The date &#39;2026-13-01&#39; is not a day like" in bad.text
    assert signed_in.client.get(f"{DESK}/preview?date=<x>").text.count("&#39;&lt;x&gt;&#39;") == 1


def test_curation_from_the_desk_is_recorded_with_the_editors_address(signed_in):
    client = signed_in.client
    for action, story, section in (("withdraw", "storm", "world"), ("feature", "quake", "world"),
                                   ("restore", "storm", ""), ("down", "storm", "world")):
        done = curate(client, action, story, section)
        assert done.status_code == 303 and done.headers["location"] == f"{DESK}?date={DAY}", (action, done.text)
    log = changes(signed_in.engine, ["storm", "quake", "lead"])
    assert [(c.article_id, c.action) for c in log] == [
        ("storm", "withdraw"), ("lead", "unfeature"), ("quake", "feature"), ("storm", "restore"),
        ("storm", "priority")]
    assert {c.who for c in log} == {EDITOR} and all(c.at for c in log)
    edition = load_edition(signed_in.engine, date(2026, 11, 25), signed_in.settings)
    assert next(a for a in edition.articles if a.featured).id == "quake"
    page = client.get(f"{DESK}?date={DAY}").text
    assert page.count(EDITOR) >= 5  # the change log, and the masthead
    assert page.index("The &lt;b&gt;lead&lt;/b&gt; story") < page.index("Storm warning")  # moved down
    refused = curate(client, "up", "lead", "world")  # World under the new lead: lead, storm
    assert refused.status_code == 409 and "already first in world" in refused.text


def test_curation_needs_the_sessions_csrf_value_and_this_site(signed_in, tmp_path):
    client = signed_in.client
    assert curate(client, "withdraw", "storm", token="").status_code == 403
    assert curate(client, "withdraw", "storm", token="f" * 64).status_code == 403
    assert curate(client, "withdraw", "storm", Origin="https://evil.example").status_code == 403
    assert curate(client, "bogus", "storm").status_code == 400
    assert changes(signed_in.engine, ["storm"]) == []


def test_a_frozen_edition_is_read_only_and_says_why(signed_in):
    engine, settings = signed_in.engine, signed_in.settings
    freeze(engine, load_edition(engine, date(2026, 11, 25), settings), settings)
    page = signed_in.client.get(f"{DESK}?date={DAY}").text
    assert "Frozen, read-only." in page and "Sending started at" in page
    assert 'action="/digest/editor/curate"' not in page  # no buttons
    refused = curate(signed_in.client, "withdraw", "storm")
    assert refused.status_code == 409 and "the edition of 2026-11-25 is frozen" in refused.text
    assert changes(engine, ["storm"]) == []


# -- preview as anyone ------------------------------------------------------------------------

def test_preview_as_a_subscriber_shows_the_inbox_line_text_and_sandboxed_frames(signed_in):
    page = signed_in.client.get(f"{DESK}/preview?date={DAY}&subscriber=tess@example.com")
    html = page.text
    assert page.status_code == 200
    assert "Previewing as tess@example.com" in html
    assert re.search(r"<dt>Subject</dt><dd>The Daily Digest, Wed 25 Nov: The &lt;b&gt;lead&lt;/b&gt; story</dd>",
                     html), html
    assert "<dt>From</dt><dd>The Daily Digest</dd>" in html
    frames = re.findall(r'<iframe src="([^"]+)" width="(\d+)"[^>]* sandbox=""', html)
    assert [w for _, w in frames] == ["375", "720"]
    email = signed_in.client.get(frames[0][0].replace("&amp;", "&"))
    assert email.status_code == 200 and "Chip news" in email.text and "Storm warning" in email.text
    assert email.headers["content-security-policy"].startswith("sandbox; default-src 'none'")
    assert email.headers["cache-control"] == "no-store"
    # The preview's links are not tess's real ones.
    tess = signed_in.get("tess@example.com")
    assert signed_in.token(tess) not in email.text and signed_in.token(tess) not in html
    assert "Chip news" in html.split("Plain-text part", 1)[1]  # the text part beside the frames


def test_preview_by_sections_everything_and_notes(signed_in):
    client = signed_in.client
    tech = client.get(f"{DESK}/preview?date={DAY}&sections=tech").text
    assert "Previewing as a reader of Tech" in tech and 'value="tech" checked' in tech
    everything = client.get(f"{DESK}/preview?date={DAY}").text
    assert "Previewing as a reader of every section" in everything
    paused = client.get(f"{DESK}/preview?date={DAY}&subscriber=paula@example.com").text
    assert "paula@example.com is paused: they would get no digest today" in paused
    nobody = client.get(f"{DESK}/preview?date={DAY}&subscriber=nobody@example.com").text
    assert "nobody@example.com is not a subscriber" in nobody
    empty = client.get(f"{DESK}/preview?date=2026-11-20").text
    assert "this digest would not be sent" in empty
    gone = client.get(f"{DESK}/preview/email?date=2026-11-20")
    assert gone.status_code == 404


def test_subscriber_search_is_a_substring_escaped_and_limited(signed_in):
    for i in range(25):
        signed_in.add(f"reader{i:02d}@example.org")
    signed_in.add("100%_sure@example.com")
    client = signed_in.client
    found = client.get(f"{DESK}/preview?date={DAY}&q=READER").text
    assert found.count('href="/digest/editor/preview?date=2026-11-25&amp;subscriber=reader') == 20
    assert "The first 20 are shown" in found
    literal = client.get(f"{DESK}/preview", params={"date": DAY, "q": "%_"}).text
    assert literal.count("subscriber=100%25_sure%40example.com") == 1
    assert "wendy@example.com" not in literal  # % and _ are characters, not wildcards
    signed_in.add("kate@example.com")
    prefix_first = client.get(f"{DESK}/preview", params={"date": DAY, "q": "TE"}).text
    shown = re.findall(r'subscriber=([a-z0-9.]+)%40example\.com">', prefix_first)
    assert shown == ["tess", "kate"]  # a prefix match first, then the other substring matches
    script = client.get(f"{DESK}/preview", params={"date": DAY, "q": "<script>x"}).text
    assert "<script>x" not in script and "&lt;script&gt;x" in script
