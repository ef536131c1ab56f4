"""The preference centre, unsubscribe and sign-up pages, through Starlette's TestClient."""

import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from itsdangerous import URLSafeSerializer

from digest.config import SECTIONS, ConfigError, Settings
from digest.store import subscribers, utcnow
from digest.subscribers import store
from digest.tokens import Signer
from digest.web.app import create_app, run_server
from digest.web.security import origin_of, redact
from tests.fake_sendgrid import FakeSendGrid
from tests.stores import store_url
from tests.web_helpers import (
    SECRET,
    ServeProcess,
    checked_sections,
    digest_command,
    free_port,
    hidden,
    html_part,
    link_in,
    make_site,
)

EVIL = {"Origin": "https://evil.example"}


def save(site, sub, **fields):
    data = {"csrf": site.csrf(sub), "form": "preferences", "name": sub.name, "status": sub.status, **fields}
    return site.client.post(site.prefs(sub), data=data)


# -- routing and startup ---------------------------------------------------------------------

def test_routes_live_under_the_base_url_path(site):
    sub = site.add("jo@example.com")
    assert site.client.get(site.prefs(sub)).status_code == 200
    assert site.client.get(site.prefs(sub).removeprefix("/digest")).status_code == 404
    home = site.client.get("/digest")
    assert home.status_code == 303 and home.headers["location"] == "/digest/subscribe"
    assert site.client.get("/digest/static/style.css").headers["content-type"].startswith("text/css")


def test_routes_at_the_root_when_the_base_url_has_no_path(tmp_path):
    site = make_site(tmp_path, base_url="http://testserver")
    sub = site.add("jo@example.com")
    assert site.client.get(f"/preferences/{site.token(sub)}").status_code == 200
    assert site.client.get("/").headers["location"] == "/subscribe"


def test_no_secret_key_refuses_to_start(tmp_path):
    settings = Settings(database_url=store_url(tmp_path / "d.db"))
    with pytest.raises(ConfigError, match="DIGEST_SECRET_KEY"):
        create_app(settings)
    with pytest.raises(ConfigError):
        run_server(settings, "127.0.0.1", 0)  # raises before listening


def test_serve_without_secret_key_exits_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "SENDGRID_"))}
    env["DIGEST_DATABASE_URL"] = store_url(tmp_path / "d.db")
    done = subprocess.run([digest_command(), "serve", "--port", "0"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "DIGEST_SECRET_KEY" in done.stderr


def test_malformed_webhook_key_is_a_startup_error(tmp_path):
    with pytest.raises(ConfigError, match="SENDGRID_WEBHOOK_PUBLIC_KEY"):
        make_site(tmp_path, sendgrid_webhook_public_key="not-a-key")


def test_sendgrid_signups_need_an_api_key(tmp_path):
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY"):
        make_site(tmp_path, signup_delivery="sendgrid")


def test_pages_send_protective_headers(site):
    sub = site.add("jo@example.com")
    headers = site.client.get(site.prefs(sub)).headers
    assert "form-action 'self'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cache-control"] == "no-store"
    assert "set-cookie" not in headers


# -- the preference centre ---------------------------------------------------------------------

def test_preferences_page_has_13_section_checkboxes_with_current_ones_checked(site):
    sub = site.add("jo@example.com", "Jo", ("tech", "world"))
    page = site.client.get(site.prefs(sub)).text
    assert re.findall(r'type="checkbox" id="section-\w+" name="sections" value="(\w+)"', page) == list(SECTIONS)
    assert checked_sections(page) == ["world", "tech"]
    assert 'for="section-world">World</label>' in page
    assert 'name="name" value="Jo"' in page
    assert "<legend>Sections</legend>" in page and "<legend>Delivery</legend>" in page
    assert "jo@example.com" not in page  # the address is only hinted at: j•••@example.com


def test_no_selection_says_plainly_that_the_defaults_apply(tmp_path):
    site = make_site(tmp_path, default_sections=("world", "tech"))
    page = site.client.get(site.prefs(site.add("jo@example.com"))).text
    assert checked_sections(page) == []
    assert "No selection = the default sections: World, Tech." in page
    assert "you get the default sections: World, Tech" in page


def test_saving_changes_sections_name_and_shows_what_was_saved(site):
    sub = site.add("jo@example.com", "Jo", ("tech",))
    r = save(site, sub, sections=["science", "world"], name="Jo Smith")
    assert r.status_code == 200
    assert "Saved" in r.text and "World, Science" in r.text and "Jo Smith" in r.text
    after = site.get("jo@example.com")
    assert after.sections == ("world", "science") and after.name == "Jo Smith" and after.status == "active"
    assert checked_sections(r.text) == ["world", "science"]


def test_saving_no_sections_means_the_defaults(site):
    sub = site.add("jo@example.com", "Jo", ("tech",))
    r = save(site, sub)
    assert site.get("jo@example.com").sections == ()
    assert "the default sections (every section)" in r.text


def test_pause_and_resume(site):
    sub = site.add("jo@example.com")
    save(site, sub, status="paused")
    assert site.get("jo@example.com").status == "paused"
    assert "Paused: no digest until you resume" in site.client.get(site.prefs(sub)).text
    save(site, sub, status="active")
    assert site.get("jo@example.com").status == "active"


def test_bad_input_changes_nothing(site):
    sub = site.add("jo@example.com", "Jo", ("tech",))
    r = save(site, sub, sections=["tech", "astrology"])
    assert r.status_code == 400 and "Choose from the sections listed" in r.text and "Nothing was saved" in r.text
    r = save(site, sub, name="x" * 201)
    assert r.status_code == 400 and 'aria-invalid="true" aria-describedby="name-error"' in r.text
    r = save(site, sub, status="bounced")
    assert r.status_code == 400
    assert site.get("jo@example.com") == sub


def test_names_are_escaped(site):
    sub = site.add("riley@example.org", "Riley <script>alert(1)</script>")
    page = site.client.get(site.prefs(sub)).text
    assert "<script>" not in page and "Riley &lt;script&gt;alert(1)&lt;/script&gt;" in page
    r = save(site, sub, name='"><img src=x onerror=alert(1)>')
    assert "<img" not in r.text


# -- cross-site posts -----------------------------------------------------------------------------

def test_posts_without_the_form_token_are_refused(site):
    sub = site.add("jo@example.com", "Jo", ("tech",))
    for data in ({"form": "preferences", "sections": ["world"]},
                 {"form": "preferences", "sections": ["world"], "csrf": "0" * 64},
                 {"status": "paused", "csrf": site.csrf(site.add("other@example.com"))}):
        r = site.client.post(site.prefs(sub), data=data)
        assert r.status_code == 403 and "nothing was changed" in r.text
    assert site.client.post(site.unsub(sub), data={}).status_code == 403
    assert site.get("jo@example.com") == sub


def test_posts_from_another_origin_are_refused_even_with_the_token(site):
    sub = site.add("jo@example.com", "Jo", ("tech",))
    data = {"csrf": site.csrf(sub), "form": "preferences", "sections": ["world"], "status": "active"}
    assert site.client.post(site.prefs(sub), data=data, headers=EVIL).status_code == 403
    assert site.client.post(site.prefs(sub), data=data, headers={"Origin": "null"}).status_code == 403
    assert site.get("jo@example.com") == sub
    assert site.client.post(site.prefs(sub), data=data, headers={"Origin": "http://testserver"}).status_code == 200


# -- bad links ----------------------------------------------------------------------------------------

def test_bad_tokens_get_one_friendly_page_that_reveals_nothing(site):
    sub = site.add("jo@example.com")
    token = site.token(sub)
    foreign = URLSafeSerializer("another-key", salt="news-digest.manage").dumps(sub.id)
    gone = site.add("gone@example.com")
    gone_url = site.prefs(gone)
    store.remove(site.engine, "gone@example.com")
    bodies = set()
    for url in (f"/digest/preferences/{token[:-3]}", f"/digest/preferences/{token}x",
                f"/digest/preferences/{foreign}", "/digest/preferences/%3Cscript%3E",
                f"/digest/unsubscribe/{token[:8]}", gone_url, "/digest/no-such-page"):
        r = site.client.get(url)
        assert r.status_code == 404, url
        assert "This link does not work" in r.text and "Traceback" not in r.text
        assert "jo@example.com" not in r.text and "gone@" not in r.text
        bodies.add(r.text)
    assert len(bodies) == 1
    assert site.client.post(gone_url.replace("preferences", "unsubscribe"),
                            data={"List-Unsubscribe": "One-Click"}).status_code == 404


def test_a_crash_is_a_friendly_500_page(tmp_path, monkeypatch):
    site = make_site(tmp_path, raise_server_exceptions=False)
    sub = site.add("jo@example.com")
    monkeypatch.setattr(store, "get", lambda *a, **k: 1 / 0)
    r = site.client.get(site.prefs(sub))
    assert r.status_code == 500
    assert "Something went wrong on our side" in r.text and "ZeroDivision" not in r.text


def test_redact_replaces_link_tokens_in_paths():
    assert redact("GET /digest/preferences/MQ.abc_DEF HTTP/1.1") == "GET /digest/preferences/… HTTP/1.1"
    assert redact("/unsubscribe/MQ.x?y=1") == "/unsubscribe/…?y=1"


def test_tokens_are_kept_out_of_the_access_log_of_a_real_serve(tmp_path):
    """The filter is installed where uvicorn logs requests, not only written."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "SENDGRID_"))}
    env.update(DIGEST_DATABASE_URL=store_url(tmp_path / "digest.db"), DIGEST_SECRET_KEY=SECRET,
               DIGEST_BASE_URL=f"http://127.0.0.1:{port}/digest")
    token = Signer(SECRET).manage_token(1, "jo@example.com")
    serve = ServeProcess(tmp_path, env, port=port).start()
    try:
        serve.wait_ready("/digest/subscribe")
        for kind in ("preferences", "unsubscribe"):
            try:
                urllib.request.urlopen(f"{serve.url}/digest/{kind}/{token}", timeout=10)
            except urllib.error.HTTPError:
                pass  # nobody has id 1: "link not valid"; the request is logged all the same
        deadline = time.monotonic() + 10
        while "/digest/unsubscribe/" not in serve.output() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        serve.stop()
    log = serve.output()
    assert '"GET /digest/preferences/… HTTP/1.1"' in log and '"GET /digest/unsubscribe/… HTTP/1.1"' in log, log
    assert token not in log and token.split(".")[0] + "." not in log, log


# -- unsubscribe --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("as_multipart", [False, True])
def test_one_click_unsubscribe_is_immediate_and_idempotent(site, as_multipart):
    sub = site.add("jo@example.com")
    for _ in range(2):
        if as_multipart:  # RFC 8058 allows either encoding
            r = site.client.post(site.unsub(sub), files={"List-Unsubscribe": (None, "One-Click")})
        else:
            r = site.client.post(site.unsub(sub), content=b"List-Unsubscribe=One-Click",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 200
        assert "set-cookie" not in r.headers
    after = site.get("jo@example.com")
    assert (after.status, after.status_reason) == ("unsubscribed", "one-click unsubscribe")


def test_unsubscribe_page_confirms_with_a_button_then_offers_a_way_back(site):
    sub = site.add("jo@example.com", sections=("tech",))
    page = site.client.get(site.unsub(sub)).text
    assert site.get("jo@example.com").status == "active"  # looking changes nothing
    assert f'action="{site.unsub(sub)}"' in page and ">Unsubscribe</button>" in page
    assert f'href="{site.prefs(sub)}"' in page  # change sections or pause instead
    r = site.client.post(site.unsub(sub), data={"csrf": hidden(page, "csrf")})
    assert r.status_code == 200 and "You are unsubscribed" in r.text
    assert site.get("jo@example.com").status_reason == "unsubscribe page"
    # The way back: one button that resubscribes with the sections kept.
    r = site.client.post(site.prefs(sub), data={"csrf": hidden(r.text, "csrf"), "status": "active"})
    after = site.get("jo@example.com")
    assert r.status_code == 200 and (after.status, after.sections) == ("active", ("tech",))


def test_unsubscribing_keeps_a_bounce_on_record(site):
    sub = site.add("jo@example.com", status="bounced")
    site.client.post(site.unsub(sub), data={"List-Unsubscribe": "One-Click"})
    assert site.get("jo@example.com").status == "bounced"


@pytest.mark.parametrize("status", ["unsubscribed", "bounced", "complained"])
def test_leaving_a_suppression_takes_an_explicit_choice(site, status):
    sub = site.add("jo@example.com", status=status)
    store.set_status(site.engine, sub.id, status, "bounce: 550 5.1.1 user unknown" if status == "bounced" else None)
    page = site.client.get(site.prefs(sub)).text
    assert 'value="keep" checked' in page and "Resubscribe" in page
    if status == "bounced":
        assert "Emails to this address bounced (bounce: 550 5.1.1 user unknown)" in page
    save(site, sub, status="keep", sections=["food"])
    after = site.get("jo@example.com")
    assert (after.status, after.sections) == (status, ("food",))
    save(site, sub, status="active", sections=["food"])
    assert site.get("jo@example.com").status == "active"


@pytest.mark.parametrize("status", ["unsubscribed", "bounced", "complained"])
def test_a_page_shown_before_a_suppression_cannot_lift_it_when_saved(site, status):
    """The page was opened while the digest was on; meanwhile the person unsubscribed in
    one click (or the address bounced): saving that page as it was changes the sections,
    never the suppression.  A page shown after it offers the explicit choice, as always."""
    sub = site.add("jo@example.com", sections=("tech",))
    page = site.client.get(site.prefs(sub)).text
    assert 'name="shown" value="active"' in page
    store.set_status(site.engine, sub.id, status, "meanwhile")
    for choice in ("active", "paused"):  # whatever the page's radio said
        data = {"csrf": hidden(page, "csrf"), "form": "preferences", "shown": hidden(page, "shown"),
                "status": choice, "sections": ["food"]}
        assert site.client.post(site.prefs(sub), data=data).status_code == 200
        after = site.get("jo@example.com")
        assert (after.status, after.status_reason, after.sections) == (status, "meanwhile", ("food",))
    fresh = site.client.get(site.prefs(sub)).text
    data = {"csrf": hidden(fresh, "csrf"), "form": "preferences", "shown": hidden(fresh, "shown"), "status": "active"}
    site.client.post(site.prefs(sub), data=data)
    assert site.get("jo@example.com").status == "active"


def test_a_page_showing_the_digest_on_still_pauses_and_resumes(site):
    sub = site.add("jo@example.com")
    for choice in ("paused", "active"):
        page = site.client.get(site.prefs(sub)).text
        data = {"csrf": hidden(page, "csrf"), "form": "preferences", "shown": hidden(page, "shown"), "status": choice}
        site.client.post(site.prefs(sub), data=data)
        assert site.get("jo@example.com").status == choice


# -- sign-up (double opt-in) ------------------------------------------------------------------------------

def signup(site, **fields):
    form = site.client.get("/digest/subscribe").text
    return site.client.post("/digest/subscribe", data={"csrf": hidden(form, "csrf"), **fields})


def signup_emails(site):
    return sorted((Path(site.settings.outbox) / "signups").glob("*.eml"))


def test_subscribe_form(site):
    page = site.client.get("/digest/subscribe").text
    assert '<label for="email">Email address</label>' in page
    assert len(re.findall(r'name="sections"', page)) == 13 and checked_sections(page) == []


def test_signup_is_pending_until_the_emailed_link_is_opened(site):
    r = signup(site, email="New@Example.com", name="Nia", sections=["tech", "food"])
    assert r.status_code == 200 and "Check your inbox" in r.text
    sub = site.get("new@example.com")
    assert (sub.status, sub.name, sub.sections) == ("pending", "Nia", ("tech", "food"))
    [eml] = signup_emails(site)
    link = link_in(html_part(eml), "confirm")
    assert link.startswith(f"{site.settings.base_url}/confirm/")
    url = link.removeprefix("http://testserver")
    # Opening the link (as a mail scanner does too) only shows a button.
    assert site.client.head(url).status_code == 200
    r = site.client.get(url)
    assert r.status_code == 200 and ">Confirm my subscription</button>" in r.text and "N•••@example.com" in r.text
    assert site.get("new@example.com").status == "pending"
    r = site.client.post(url, data={"csrf": hidden(r.text, "csrf")})
    assert r.status_code == 200 and "You are subscribed" in r.text
    assert site.get("new@example.com").status == "active"
    assert 'href="/digest/preferences/' in r.text


def age(site, email: str, minutes: int = 11) -> None:
    """Pretend the subscriber's row was last touched `minutes` ago (the sign-up email clock)."""
    with site.engine.begin() as conn:
        conn.execute(subscribers.update().where(subscribers.c.email_key == email.lower())
                     .values(updated_at=utcnow() - timedelta(minutes=minutes)))


def test_the_answer_is_the_same_whatever_the_address_state(site):
    answers = [signup(site, email="ann@example.com").text]  # new
    age(site, "ann@example.com")
    answers.append(signup(site, email="ann@example.com").text)  # pending
    store.set_status(site.engine, site.get("ann@example.com").id, "active")
    age(site, "ann@example.com")
    answers.append(signup(site, email="ann@example.com", name="Changed", sections=["food"]).text)  # active
    for status in ("unsubscribed", "bounced", "complained"):
        store.set_status(site.engine, site.get("ann@example.com").id, status)
        age(site, "ann@example.com")
        answers.append(signup(site, email="ann@example.com").text)
    assert len(set(answers)) == 1
    after = site.get("ann@example.com")
    assert (after.name, after.sections, after.status) == ("", (), "complained")  # the form changed nothing
    emails = [html_part(p) for p in signup_emails(site)]
    assert len(emails) == 4  # none to the bounced or complained address
    assert "/confirm/" in emails[0] and "/confirm/" in emails[1]
    assert "You already get it" in emails[2] and "/preferences/" in emails[2]
    assert "You unsubscribed earlier" in emails[3] and "/preferences/" in emails[3] and "/confirm/" not in emails[3]


def test_signup_with_a_bad_address_shows_the_form_again(site):
    r = signup(site, email="not-an-address", name="Nia", sections=["tech"])
    assert r.status_code == 400
    assert 'aria-invalid="true" aria-describedby="email-error"' in r.text
    assert "like name@example.com" in r.text and 'value="Nia"' in r.text and checked_sections(r.text) == ["tech"]
    assert store.list_all(site.engine) == [] and signup_emails(site) == []


def test_signup_needs_the_form_token_and_our_origin(site):
    assert site.client.post("/digest/subscribe", data={"email": "a@example.com"}).status_code == 403
    form = site.client.get("/digest/subscribe").text
    r = site.client.post("/digest/subscribe", data={"csrf": hidden(form, "csrf"), "email": "a@example.com"},
                         headers=EVIL)
    assert r.status_code == 403 and store.list_all(site.engine) == []


def test_bad_confirmation_links_are_friendly(site):
    r = site.client.get("/digest/confirm/nonsense")
    assert r.status_code == 404 and "This confirmation link does not work" in r.text
    manage = site.token(site.add("jo@example.com", status="pending"))
    assert site.client.get(f"/digest/confirm/{manage}").status_code == 404  # a manage token is not a confirm token


def test_signup_through_sendgrid(tmp_path):
    with FakeSendGrid() as sg:
        site = make_site(tmp_path, signup_delivery="sendgrid", sendgrid_api_key=sg.api_key, sendgrid_host=sg.url)
        signup(site, email="nia@example.com")
        [delivery] = sg.deliveries_to("nia@example.com")
    assert "/digest/confirm/" in delivery["text"]
    assert delivery["custom_args"]["subscriber_id"] == str(site.get("nia@example.com").id)


# -- regressions from the QA review -------------------------------------------------------------------------

def test_a_save_without_the_hidden_form_field_still_saves(site):
    # A script (or an old page) posts only what it means; every field present is saved.
    sub = site.add("jo@example.com", "Jo", ("tech",))
    r = site.client.post(site.prefs(sub), data={"csrf": site.csrf(sub), "sections": ["world", "food"]})
    assert r.status_code == 200 and "Saved" in r.text
    after = site.get("jo@example.com")
    assert (after.sections, after.name, after.status) == (("world", "food"), "Jo", "active")  # name kept
    r = site.client.post(site.prefs(sub), data={"csrf": site.csrf(sub), "sections": ["science"], "name": "Jo S"})
    assert (site.get("jo@example.com").sections, site.get("jo@example.com").name) == (("science",), "Jo S")
    # No `sections` at all is what a browser sends with nothing ticked: the defaults.
    r = site.client.post(site.prefs(sub), data={"csrf": site.csrf(sub)})
    assert "Saved" in r.text and "the default sections (every section)" in r.text
    assert (site.get("jo@example.com").sections, site.get("jo@example.com").name) == ((), "Jo S")


def test_a_missing_name_field_leaves_the_name_alone_and_an_empty_one_clears_it(site):
    sub = site.add("jo@example.com", "Jo", ("tech",))
    site.client.post(site.prefs(sub), data={"csrf": site.csrf(sub), "form": "preferences", "sections": ["tech"],
                                            "status": "active"})
    assert site.get("jo@example.com").name == "Jo"
    save(site, sub, name="")
    assert site.get("jo@example.com").name == ""


def test_a_status_only_post_keeps_sections_and_name(site):
    sub = site.add("jo@example.com", "Jo", ("tech",))
    r = site.client.post(site.prefs(sub), data={"csrf": site.csrf(sub), "status": "paused"})
    assert r.status_code == 200 and "Your digest is paused" in r.text
    after = site.get("jo@example.com")
    assert (after.status, after.sections, after.name) == ("paused", ("tech",), "Jo")


def test_head_requests_change_nothing_and_are_not_refused(site):
    sub = site.add("jo@example.com", "Jo", ("tech",))
    pending = site.add("pia@example.com", status="pending")
    for url in (site.prefs(sub), site.unsub(sub), "/digest/subscribe",
                f"/digest/confirm/{site.signer.confirm_token(pending.id, pending.email)}"):
        r = site.client.head(url)
        assert r.status_code == 200, url
    assert site.get("jo@example.com") == sub and site.get("pia@example.com") == pending


@pytest.mark.parametrize("status", ["active", "paused", "unsubscribed", "bounced", "complained"])
def test_a_confirmation_link_changes_only_a_pending_subscriber(site, status):
    sub = site.add("jo@example.com", status=status)
    url = f"/digest/confirm/{site.signer.confirm_token(sub.id, sub.email)}"
    r = site.client.get(url)
    assert r.status_code == 200 and "Nothing to confirm" in r.text and "<form" not in r.text
    # Even a well-formed post (the form token the button would carry) changes nothing.
    csrf = site.client.app.state.site.guard.for_token(url.rsplit("/", 1)[1])
    r = site.client.post(url, data={"csrf": csrf})
    assert r.status_code == 200 and "Nothing to confirm" in r.text
    assert site.get("jo@example.com") == sub


def test_a_confirmation_link_works_once(site):
    sub = site.add("pia@example.com", status="pending")
    url = f"/digest/confirm/{site.signer.confirm_token(sub.id, sub.email)}"
    csrf = hidden(site.client.get(url).text, "csrf")
    assert "You are subscribed" in site.client.post(url, data={"csrf": csrf}).text
    store.set_status(site.engine, sub.id, "unsubscribed", "unsubscribe page")  # later they leave
    r = site.client.post(url, data={"csrf": csrf})  # the old email's link, clicked again
    assert "Nothing to confirm" in r.text and site.get("pia@example.com").status == "unsubscribed"


def test_confirming_needs_the_form_token_and_our_origin(site):
    sub = site.add("pia@example.com", status="pending")
    url = f"/digest/confirm/{site.signer.confirm_token(sub.id, sub.email)}"
    csrf = hidden(site.client.get(url).text, "csrf")
    assert site.client.post(url, data={}).status_code == 403
    assert site.client.post(url, data={"csrf": "0" * 64}).status_code == 403
    assert site.client.post(url, data={"csrf": csrf}, headers=EVIL).status_code == 403
    assert site.client.post("/digest/confirm/nonsense", data={"csrf": csrf}).status_code == 404
    assert site.get("pia@example.com").status == "pending"


def test_file_parts_in_any_form_are_a_400_not_a_crash(tmp_path):
    site = make_site(tmp_path, raise_server_exceptions=False)
    sub = site.add("jo@example.com", "Jo", ("tech",))
    pending = site.add("pia@example.com", status="pending")
    confirm_url = f"/digest/confirm/{site.signer.confirm_token(pending.id, pending.email)}"
    signup_csrf = hidden(site.client.get("/digest/subscribe").text, "csrf")
    upload = ("x.txt", b"world", "text/plain")
    posts = [
        (site.prefs(sub), {"csrf": site.csrf(sub)}, {"sections": upload}),
        (site.prefs(sub), {"csrf": site.csrf(sub), "sections": "world"}, {"name": upload}),
        (site.prefs(sub), {}, {"csrf": upload}),
        (site.unsub(sub), {}, {"List-Unsubscribe": upload}),
        ("/digest/subscribe", {"csrf": signup_csrf}, {"email": upload}),
        ("/digest/subscribe", {"email": "a@example.com"}, {"csrf": upload}),
        (confirm_url, {}, {"csrf": upload}),
    ]
    for url, data, files in posts:
        r = site.client.post(url, data=data, files=files)
        assert r.status_code == 400 and "That did not work" in r.text, (url, files)
    assert site.get("jo@example.com") == sub and site.get("pia@example.com") == pending
    assert store.get(site.engine, email="a@example.com") is None


def test_signup_emails_are_rate_limited_per_address(site):
    for _ in range(3):
        assert "Check your inbox" in signup(site, email="ann@example.com").text
    assert len(signup_emails(site)) == 1  # one per 10 minutes, whatever the form is made to do
    signup(site, email="bob@example.com")
    assert len(signup_emails(site)) == 2  # per address, not global
    age(site, "ann@example.com", minutes=11)
    signup(site, email="ann@example.com")
    assert len(signup_emails(site)) == 3


def test_signup_emails_never_carry_a_message_typed_into_the_name(site):
    signup(site, email="ann@example.com", name="WIN A PRIZE at evil.example")
    [confirm] = signup_emails(site)
    assert "evil.example" not in confirm.read_text()  # neither the greeting nor the To: header
    jo = site.add("jo@example.com", "Jo")
    age(site, "jo@example.com")
    signup(site, email="jo@example.com", name="WIN A PRIZE at evil.example")
    [already] = [p for p in signup_emails(site) if p != confirm]
    assert "evil.example" not in already.read_text() and "Hello Jo," in html_part(already)
    assert site.get("jo@example.com") == jo


def test_the_confirmation_greets_with_a_name_that_looks_like_one(site):
    signup(site, email="ann@example.com", name="Ann-Marie O’Neil")
    [confirm] = signup_emails(site)
    assert "Hello Ann-Marie O’Neil," in html_part(confirm)
    assert "Ann-Marie" not in confirm.read_text().split("\n\n", 1)[0]  # never in the headers (To:)
    assert store.get(site.engine, email="ann@example.com").name == "Ann-Marie O’Neil"


def test_greeting_name_keeps_names_and_drops_messages():
    from digest.subscribers.signup import greeting_name
    for name in ("Jo", "J. R. Smith", "Zoë Ångström", "李小龙", "  Ann   Lee "):
        assert greeting_name(name) == " ".join(name.split())
    for message in ("WIN A PRIZE at evil.example", "see http://x.example", "call 555 0100", "Jo <b>",
                    "one two three four five", "x" * 41, "free$$$"):
        assert greeting_name(message) == "", message


def test_a_filled_honeypot_is_answered_as_usual_and_sends_nothing(site):
    r = signup(site, email="ann@example.com", website="http://spam.example")
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert signup_emails(site) == [] and store.get(site.engine, email="ann@example.com") is None
    page = site.client.get("/digest/subscribe").text
    assert 'name="website"' in page and 'class="trap" aria-hidden="true"' in page


def test_one_client_cannot_sign_up_strangers_by_the_dozen(site):
    answers = [signup(site, email=f"stranger{i}@example.com") for i in range(12)]
    assert [a.status_code for a in answers] == [200] * 10 + [429] * 2
    assert answers[-1].headers["Retry-After"] == "600" and "try again in a few minutes" in answers[-1].text
    assert len(signup_emails(site)) == 10


def test_the_whole_form_has_a_limit_too(site, monkeypatch):
    from limits import parse

    from digest.web import signup as signup_pages
    monkeypatch.setattr(signup_pages, "PER_CLIENT", parse("100/minute"))
    monkeypatch.setattr(signup_pages, "ALL_CLIENTS", parse("3/minute"))
    answers = [signup(site, email=f"s{i}@example.com").status_code for i in range(4)]
    assert answers == [200, 200, 200, 429]


def test_origin_must_be_the_base_urls_not_merely_the_host_header(site):
    sub = site.add("jo@example.com", "Jo", ("tech",))
    data = {"csrf": site.csrf(sub), "form": "preferences", "sections": ["world"], "status": "active"}
    for origin, host in (("http://evil.example", "evil.example"), ("https://testserver", "testserver"),
                         ("http://testserver:8080", "testserver:8080")):
        r = site.client.post(site.prefs(sub), data=data, headers={"Origin": origin, "Host": host})
        assert r.status_code == 403, origin
    assert site.get("jo@example.com") == sub
    r = site.client.post(site.prefs(sub), data=data, headers={"Origin": "http://TestServer:80"})
    assert r.status_code == 200  # same origin, spelled differently


def test_origin_of():
    assert origin_of("http://127.0.0.1:8123/digest") == ("http", "127.0.0.1", 8123)
    assert origin_of("https://News.example.com") == ("https", "news.example.com", 443)
    assert origin_of("null") is None and origin_of("http://x:notaport") is None and origin_of("") is None


def test_a_link_never_reaches_whoever_later_holds_the_same_id(site):
    """After a restore into a new database ids can shift: an old link must then stop working."""
    old = site.add("first@example.com", "First")
    link = site.unsub(old)
    store.remove(site.engine, "first@example.com")
    with site.engine.begin() as conn:  # someone else now has that id
        now = utcnow()
        conn.execute(subscribers.insert().values(id=old.id, email="second@example.com", email_key="second@example.com",
                                                 name="Second", section_mask=0, status="active",
                                                 created_at=now, updated_at=now))
    assert site.client.get(link).status_code == 404
    assert site.client.post(link, data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert site.get("second@example.com").status == "active"


def test_a_confirmation_link_never_activates_whoever_later_holds_the_same_id(site):
    old = site.add("first@example.com", status="pending")
    url = f"/digest/confirm/{site.signer.confirm_token(old.id, old.email)}"
    csrf = hidden(site.client.get(url).text, "csrf")
    store.remove(site.engine, "first@example.com")
    with site.engine.begin() as conn:  # a restore renumbered: another pending person has that id now
        now = utcnow()
        conn.execute(subscribers.insert().values(id=old.id, email="second@example.com", email_key="second@example.com",
                                                 name="", section_mask=0, status="pending",
                                                 created_at=now, updated_at=now))
    r = site.client.get(url)
    assert r.status_code == 404 and "This confirmation link does not work" in r.text
    r = site.client.post(url, data={"csrf": csrf})
    assert r.status_code == 404 and "This confirmation link does not work" in r.text
    assert site.get("second@example.com").status == "pending"


def test_an_old_confirmation_link_naming_only_an_id_is_refused_clearly(site):
    from itsdangerous import URLSafeTimedSerializer
    pending = site.add("pia@example.com", status="pending")
    old_form = URLSafeTimedSerializer(site.settings.secret_key, salt="news-digest.confirm").dumps(pending.id)
    r = site.client.get(f"/digest/confirm/{old_form}")
    assert r.status_code == 404 and "This confirmation link does not work" in r.text and "Sign up again" in r.text
    assert site.get("pia@example.com").status == "pending"


def test_a_busy_database_is_a_503_page_not_a_500(tmp_path, write_lock):
    site = make_site(tmp_path)
    sub = site.add("jo@example.com")
    write_lock()
    r = site.client.post(site.unsub(sub), data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 503 and "Busy for a moment" in r.text and "Traceback" not in r.text
    assert r.headers["retry-after"]
    assert site.client.post(site.prefs(sub), data={"csrf": site.csrf(sub), "status": "paused"}).status_code == 503


@pytest.mark.parametrize("huge_id", [2**63, 2**70, -1, 0])
def test_a_signed_link_with_an_id_out_of_range_is_an_invalid_link(site, huge_id):
    for url in (f"/digest/preferences/{site.signer.manage_token(huge_id, 'jo@example.com')}",
                f"/digest/unsubscribe/{site.signer.manage_token(huge_id, 'jo@example.com')}",
                f"/digest/confirm/{site.signer.confirm_token(huge_id, 'jo@example.com')}"):
        r = site.client.get(url)
        assert r.status_code == 404 and "does not work" in r.text, url


def test_a_trailing_slash_is_not_redirected_to_the_requests_host(site):
    for path in ("/digest/subscribe/", "/digest/static/style.css/"):
        r = site.client.get(path, headers={"Host": "evil.example"})
        assert r.status_code == 404 and "location" not in r.headers and "evil.example" not in r.text
