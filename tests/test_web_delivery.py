"""The preference page's delivery time over HTTP (Starlette's TestClient on a real store):
zone, hour, daily or weekly, pause until a date, resume; bad values are a message, never stored."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest

from tests.web_helpers import hidden

FUTURE = (date.today() + timedelta(days=20)).isoformat()
PAST = (date.today() - timedelta(days=1)).isoformat()


def save(site, sub, **fields):
    data = {"csrf": site.csrf(sub), "form": "preferences", "name": sub.name, "status": sub.status, **fields}
    return site.client.post(site.prefs(sub), data=data)


def selected(html: str, select: str) -> list[str]:
    block = re.search(rf'<select id="{select}".*?</select>', html, re.S).group(0)
    return re.findall(r'<option value="([^"]*)" selected>', block)


def test_the_page_shows_the_newsletters_time_until_the_reader_picks_one(site):
    sub = site.add("jo@example.com")
    page = site.client.get(site.prefs(sub)).text
    assert "You get The Daily Digest every day at 07:00, UTC time." in page
    assert selected(page, "timezone") == ["UTC"] and selected(page, "hour") == ["7"]
    assert selected(page, "weekday") == ["0"] and 'value="daily" checked' in page
    regions = re.findall(r'<optgroup label="([^"]+)">', page)
    assert regions[:3] == ["Africa", "America", "Antarctica"] and "Europe" in regions
    assert '<option value="Asia/Tokyo">Tokyo</option>' in page and 'value="US/Eastern"' not in page
    assert '<option value="7" selected>07:00</option>' in page
    assert 'type="date" id="paused_until" name="paused_until" value=""' in page
    assert "Resume now" not in page
    # Saving sections alone keeps following the newsletter's time (NULL), not a copy of it.
    save(site, sub, sections=["tech"], timezone="UTC", hour="7", cadence="daily", weekday="0", paused_until="")
    after = site.get("jo@example.com")
    assert after.sections == ("tech",)
    assert (after.timezone, after.delivery_hour, after.cadence, after.weekday, after.paused_until) == \
        (None, None, "daily", None, None)


def test_choosing_zone_hour_weekly_and_weekday(site):
    sub = site.add("jo@example.com")
    r = save(site, sub, timezone="Asia/Tokyo", hour="18", cadence="weekly", weekday="4", paused_until="")
    assert r.status_code == 200 and "You get the digest every Friday at 18:00, Asia/Tokyo time" in r.text
    after = site.get("jo@example.com")
    assert (after.timezone, after.delivery_hour, after.cadence, after.weekday) == ("Asia/Tokyo", 18, "weekly", 4)
    assert selected(r.text, "timezone") == ["Asia/Tokyo"] and selected(r.text, "weekday") == ["4"]
    r = save(site, sub, cadence="daily")
    assert "every day at 18:00, Asia/Tokyo time" in r.text and site.get("jo@example.com").cadence == "daily"


def test_pause_until_a_day_then_resume_now(site):
    sub = site.add("jo@example.com")
    shown = f"{date.fromisoformat(FUTURE):%A} {date.fromisoformat(FUTURE).day} {date.fromisoformat(FUTURE):%B %Y}"
    r = save(site, sub, paused_until=FUTURE)
    assert r.status_code == 200 and f"Your digest is paused until {shown}" in r.text
    assert site.get("jo@example.com").paused_until == date.fromisoformat(FUTURE)
    page = site.client.get(site.prefs(sub)).text
    assert f"Paused until {shown}: no digest before that day." in page and "state-paused" in page
    assert f'name="paused_until" value="{FUTURE}"' in page
    # Saving the page again with the date it showed keeps the pause.
    save(site, sub, sections=["world"], paused_until=FUTURE)
    assert site.get("jo@example.com").paused_until == date.fromisoformat(FUTURE)
    # "Resume now" is its own small form: it ends the pause and nothing else.
    r = site.client.post(site.prefs(sub), data={"csrf": hidden(page, "csrf"), "form": "resume"})
    assert r.status_code == 200 and "Resumed: you get the digest every day" in r.text
    after = site.get("jo@example.com")
    assert after.paused_until is None and after.sections == ("world",) and after.status == "active"
    # An emptied date field ends a pause too.
    save(site, sub, paused_until=FUTURE)
    save(site, sub, paused_until="")
    assert site.get("jo@example.com").paused_until is None


def test_resume_now_also_ends_an_open_pause_but_never_an_unsubscribe(site):
    sub = site.add("jo@example.com")
    save(site, sub, status="paused")
    page = site.client.get(site.prefs(sub)).text
    assert "Resume now" in page
    site.client.post(site.prefs(sub), data={"csrf": hidden(page, "csrf"), "form": "resume"})
    assert site.get("jo@example.com").status == "active"
    from digest.subscribers import store
    store.update(site.engine, "jo@example.com", status="unsubscribed")
    site.client.post(site.prefs(sub), data={"csrf": hidden(page, "csrf"), "form": "resume"})
    assert site.get("jo@example.com").status == "unsubscribed"


@pytest.mark.parametrize("field, value, message", [
    ("timezone", "Mars/Base", "Choose a time zone from the list."),
    ("timezone", "UTC+2", "Choose a time zone from the list."),
    ("timezone", "", "Choose a time zone from the list."),
    ("hour", "25", "Choose an hour from the list."),
    ("hour", "7; DROP TABLE subscribers", "Choose an hour from the list."),
    ("cadence", "monthly", "Choose daily or weekly."),
    ("weekday", "9", "Choose a day of the week."),
    ("paused_until", PAST, "Choose a day from"),
    ("paused_until", date.today().isoformat(), "Choose a day from"),
    ("paused_until", "31/12/2099", "Choose a day from"),
])
def test_bad_values_are_a_message_on_the_page_and_never_stored(site, field, value, message):
    sub = site.add("jo@example.com", "Jo", ("tech",))
    r = save(site, sub, sections=["world"], name="Changed", **{field: value})
    assert r.status_code == 400 and "Nothing was saved" in r.text
    assert f'<p class="error" id="{field}-error">{message}' in r.text
    if field == "cadence":  # radios: their fieldset points at the message
        assert 'class="often" aria-describedby="cadence-error"' in r.text
    else:
        assert f'id="{field}" name="{field}"' in r.text and 'aria-invalid="true"' in r.text
    assert site.get("jo@example.com") == sub


def test_a_forged_value_is_shown_back_escaped(site):
    sub = site.add("jo@example.com")
    r = save(site, sub, timezone='"><script>alert(1)</script>')
    assert r.status_code == 400 and "<script>alert" not in r.text
    assert "&#34;&gt;&lt;script&gt;" in r.text or "&quot;&gt;&lt;script&gt;" in r.text


def test_a_zone_set_elsewhere_as_a_link_is_shown_as_its_place(site, settings):
    from digest.subscribers import store
    store.add(site.engine, "ed@example.com", delivery={"timezone": "US/Eastern"}, settings=settings)
    ed = site.get("ed@example.com")
    assert selected(site.client.get(site.prefs(ed)).text, "timezone") == ["America/New_York"]
    store.update(site.engine, "ed@example.com", delivery={"timezone": "Etc/GMT+5"}, settings=settings)
    page = site.client.get(site.prefs(ed)).text  # not a place the picker lists: offered on its own
    assert '<optgroup label="Yours">' in page and selected(page, "timezone") == ["Etc/GMT+5"]


def test_the_script_is_a_file_the_csp_allows_and_nothing_inline_runs(site):
    sub = site.add("jo@example.com")
    r = site.client.get(site.prefs(sub))
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert '<script src="/digest/static/zone-suggestion.js" defer></script>' in r.text
    assert re.findall(r"<script(?![^>]*\bsrc=)", r.text) == []  # no inline script
    assert " onclick=" not in r.text
    js = site.client.get("/digest/static/zone-suggestion.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "resolvedOptions().timeZone" in js.text and '"Asia/Calcutta": "Asia/Kolkata"' in js.text
    # Pages without a script keep the policy that allows none.
    unsub = site.client.get(site.unsub(sub)).headers["content-security-policy"]
    assert "script-src" not in unsub


def test_a_newsletter_zone_given_as_a_link_is_shown_as_its_place_and_still_followed(tmp_path):
    from tests.web_helpers import make_site
    site = make_site(tmp_path, timezone="Europe/Kiev", delivery_hour=6, weekly_weekday=2)
    sub = site.add("jo@example.com")
    page = site.client.get(site.prefs(sub)).text
    assert selected(page, "timezone") == ["Europe/Kyiv"] and selected(page, "hour") == ["6"]
    assert selected(page, "weekday") == ["2"] and '<optgroup label="Yours">' not in page
    save(site, sub, timezone="Europe/Kyiv", hour="6", cadence="weekly", weekday="2")
    after = site.get("jo@example.com")
    assert (after.timezone, after.delivery_hour, after.cadence, after.weekday) == (None, None, "weekly", None)
    assert "every Wednesday at 06:00, Europe/Kyiv time" in site.client.get(site.prefs(sub)).text
