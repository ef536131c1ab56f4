"""Issue 12 item 5: the web version of every digest ("View in your browser") and /archive.

The app over a real store (tests/web_helpers.py), on SQLite and PostgreSQL alike; one test
through a real `digest serve`.
"""

from __future__ import annotations

import html
import os
import re
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import update

from digest.articles import Article
from digest.articles.repository import save_articles
from digest.config import ConfigError, load_settings, section_mask
from digest.dispatch import run
from digest.edition import freeze
from digest.importing import ImportReport
from digest.render import TOKENS
from digest.select import DEFAULTED, Edition
from digest.store import editions
from digest.subscribers import store
from digest.tokens import Signer
from digest.web.security import redact
from tests.web_helpers import BASE, SECRET, ServeProcess, html_part, make_site, read_eml

DAY = date(2026, 11, 25)
T0 = datetime(2026, 11, 25, 6, tzinfo=timezone.utc)
TRICKY = 'Fish <b>&amp;</b> "chips" & <script>alert(1)</script>'


def story(id: str, sections, title: str = "", **kw) -> Article:
    return Article(id=id, title=title or f"Story {id}", url=f"https://news.example.com/{id}",
                   published=T0, sections=tuple(sections), **kw)


def edition() -> Edition:
    return Edition(DAY, (
        story("lead", ["world"], "The lead story", featured=True),
        story("t1", ["tech"], "A tech story"),
        story("t2", ["tech"], "Another tech story"),
        story("f1", ["food"], TRICKY),
        story("s1", ["science"], "A science story"),
    ))


@pytest.fixture
def frozen(tmp_path):
    site = make_site(tmp_path)
    site.alice = site.add("alice.private@example.com", "Alice Privatename", ["tech"])
    site.bob = site.add("bob.private@example.com", "Bob Secretname", ["food"])
    freeze(site.engine, edition(), site.settings)
    return site


def path_of(url: str) -> str:
    assert url.startswith(BASE), url
    return url[len("http://testserver"):]


def view_link(html_doc: str) -> str:
    found = re.search(r'href="([^"]*/view/[^"]+)"', html_doc)
    assert found, "no View in your browser link"
    return html.unescape(found.group(1))


def story_links(html_doc: str) -> list[str]:
    return sorted(set(re.findall(r'href="(https://news\.example\.com/[a-z0-9]+)"', html_doc)))


def manage_links(html_doc: str) -> list[str]:
    return re.findall(r'href="[^"]*/(?:preferences|unsubscribe)/[^"]*"', html_doc)


def dry_run(site, tmp_path: Path) -> dict[str, tuple[str, str]]:
    """A dry run of DAY into the outbox: {address: (HTML, text)} of each email."""
    out = tmp_path / "outbox-run"
    summary = run(site.settings, DAY, mode="dry-run", outbox=out)
    assert summary.exit_code == 0
    emails = {}
    for eml in sorted(out.glob("*.eml")):
        msg = read_eml(eml)
        emails[str(msg["To"])] = (html_part(eml), msg.get_body(preferencelist=("plain",)).get_content())
    return emails


def test_the_link_in_each_email_shows_that_digest_without_personal_data(frozen, tmp_path):
    emails = dry_run(frozen, tmp_path)
    assert len(emails) == 2
    for person in (frozen.alice, frozen.bob):
        email_html, text = next(v for k, v in emails.items() if person.email in k)
        link = view_link(email_html)
        assert link == f"{BASE}/view/2026-11-25/{section_mask(person.sections)}?t={frozen.token(person)}"
        assert f"View in your browser: {link}" in text
        page = frozen.client.get(path_of(link))
        assert page.status_code == 200, page.text
        assert story_links(page.text) == story_links(email_html)  # the same stories as the email
        assert person.email not in page.text and person.name not in page.text
        assert "Good morning," in page.text and "__ND_" not in page.text
        assert "/view/" not in page.text  # no link to itself
        # The reader's own token: their preference links, as in the email.
        assert manage_links(page.text) == manage_links(email_html) and len(manage_links(page.text)) == 3
        csp = page.headers["content-security-policy"]
        assert "script-src" not in csp and "default-src 'none'" in csp and "form-action 'none'" in csp
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "private, no-store"
    alice_page = frozen.client.get(f"/digest/view/2026-11-25/{section_mask(['tech'])}").text
    assert "A tech story" in alice_page and "A science story" not in alice_page and "The lead story" in alice_page


def test_the_token_is_optional_and_verified(frozen):
    mask = section_mask(["tech"])
    plain = frozen.client.get(f"/digest/view/2026-11-25/{mask}")
    assert plain.status_code == 200 and manage_links(plain.text) == []
    assert "You receive" not in plain.text  # the footer's why (the reader's sections) needs the token too
    assert plain.headers["cache-control"].startswith("public")
    good = frozen.token(frozen.alice)
    forged = good[:-3] + ("aaa" if not good.endswith("aaa") else "bbb")
    other_key = Signer("another-key").manage_token(frozen.alice.id, frozen.alice.email)
    for bad in (forged, other_key, "junk", good + "x"):
        page = frozen.client.get(f"/digest/view/2026-11-25/{mask}", params={"t": bad})
        assert page.status_code == 200 and manage_links(page.text) == [], bad
        assert bad not in page.text and page.headers["cache-control"].startswith("public")
    # A valid token of someone since erased gives no links either.
    store.remove(frozen.engine, frozen.bob.email)
    page = frozen.client.get(f"/digest/view/2026-11-25/{mask}", params={"t": frozen.token(frozen.bob)})
    assert manage_links(page.text) == []
    page = frozen.client.get(f"/digest/view/2026-11-25/{mask}", params={"t": good})
    assert len(manage_links(page.text)) == 3 and good in page.text
    assert "You receive The Daily Digest because you follow Tech." in page.text
    assert redact(f"GET /digest/view/2026-11-25/{mask}?t={good}") == f"GET /digest/view/2026-11-25/{mask}?t=…"


def test_unfrozen_days_and_bad_links_are_not_found(frozen):
    ok = section_mask(["tech"])
    for path in (f"/digest/view/2026-11-24/{ok}",             # never frozen (nothing sent)
                 "/digest/view/2026-11-25/0",                   # no section
                 f"/digest/view/2026-11-25/{2 * DEFAULTED}",    # beyond the flags
                 f"/digest/view/2026-11-25/{DEFAULTED}",        # the flag alone
                 f"/digest/view/2026-11-25/0{ok}", "/digest/view/2026-11-25/-1", "/digest/view/2026-11-25/x",
                 f"/digest/view/20261125/{ok}", f"/digest/view/2026-13-01/{ok}", f"/digest/view/9999-01-01/{ok}",
                 "/digest/archive/2026-11-24", "/digest/archive/nope"):
        assert frozen.client.get(path).status_code == 404, path
    # A live (not yet frozen) edition is not shown, even with stories.
    save_articles(frozen.engine, [replace(a, published=a.published - timedelta(days=1)) for a in edition().articles],
                  ImportReport())
    assert frozen.client.get(f"/digest/view/2026-11-24/{ok}").status_code == 404
    assert frozen.client.get(f"/digest/view/2026-11-25/{ok}").status_code == 200


def test_story_titles_are_escaped(frozen):
    page = frozen.client.get(f"/digest/view/2026-11-25/{section_mask(['food'])}").text
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>&amp;</b>" not in page
    assert "&lt;b&gt;&amp;amp;&lt;/b&gt;" in page


def test_the_archive_lists_editions_newest_first_with_full_editions(frozen):
    freeze(frozen.engine, Edition(date(2026, 11, 20), (story("old", ["tech"], "An older story"),)),
           frozen.settings)
    index = frozen.client.get("/digest/archive")
    assert index.status_code == 200
    links = re.findall(r'href="(/digest/archive/[0-9-]+)"', index.text)
    assert links == ["/digest/archive/2026-11-25", "/digest/archive/2026-11-20"]
    assert "Wednesday 25 November 2026" in index.text
    full = frozen.client.get("/digest/archive/2026-11-25")
    assert full.status_code == 200
    for title in ("The lead story", "A tech story", "Another tech story", "A science story"):
        assert title in full.text
    assert manage_links(full.text) == [] and "/view/" not in full.text and "__ND_" not in full.text
    assert "You receive" not in full.text
    assert "An older story" in frozen.client.get("/digest/archive/2026-11-20").text


def test_archive_false_turns_off_the_archive_but_not_the_links_sent(tmp_path):
    site = make_site(tmp_path, archive=False)
    freeze(site.engine, edition(), site.settings)
    assert site.client.get("/digest/archive").status_code == 404
    assert site.client.get("/digest/archive/2026-11-25").status_code == 404
    assert site.client.get(f"/digest/view/2026-11-25/{section_mask(['tech'])}").status_code == 200


def test_the_archive_setting_loads_and_is_checked(tmp_path):
    (tmp_path / "a.toml").write_text("archive = false\n", encoding="utf-8")
    assert load_settings(tmp_path / "a.toml", env={}).archive is False
    assert load_settings(env={}).archive is True
    (tmp_path / "b.toml").write_text('archive = "no"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="archive: must be true or false"):
        load_settings(tmp_path / "b.toml", env={})


def test_a_refrozen_edition_is_rendered_again(frozen):
    mask = section_mask(["tech"])
    assert "A tech story" in frozen.client.get(f"/digest/view/2026-11-25/{mask}").text
    changed = [a.to_dict() for a in edition().articles]
    changed[1]["title"] = "A corrected tech story"
    with frozen.engine.begin() as conn:
        conn.execute(update(editions).where(editions.c.date == "2026-11-25").values(articles=changed))
    assert "A corrected tech story" in frozen.client.get(f"/digest/view/2026-11-25/{mask}").text


def test_a_defaulted_digest_has_its_own_view(frozen):
    mask = section_mask(frozen.settings.default_sections) | DEFAULTED
    page = frozen.client.get(f"/digest/view/2026-11-25/{mask}")
    assert page.status_code == 200 and "None of your sections is offered any more" in page.text


def test_tokens_in_the_email(frozen):
    r = frozen.client.get(f"/digest/view/2026-11-25/{section_mask(['tech'])}")
    assert all(t not in r.text for t in TOKENS.values())


def test_through_a_real_digest_serve(frozen, tmp_path):
    """The link of a dry-run email, followed on a real `digest serve` over the same store."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    server = ServeProcess(tmp_path, env, port=None)
    env.update(DIGEST_DATABASE_URL=frozen.settings.database_url, DIGEST_SECRET_KEY=SECRET,
               DIGEST_BASE_URL=server.url)
    server.env = env
    settings = load_settings(env=env)
    emails = {}
    out = tmp_path / "outbox-serve"
    assert run(settings, DAY, mode="dry-run", outbox=out).exit_code == 0
    for eml in out.glob("*.eml"):
        emails[str(read_eml(eml)["To"])] = html_part(eml)
    server.start()
    try:
        server.wait_ready("/archive")
        for email_html in emails.values():
            link = view_link(email_html)
            assert link.startswith(f"{server.url}/view/2026-11-25/")
            with urllib.request.urlopen(link, timeout=10) as response:
                page = response.read().decode()
            assert story_links(page) == story_links(email_html)
            assert "private@example.com" not in page
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{server.url}/view/2026-11-24/4", timeout=10)
        assert missing.value.code == 404
    finally:
        server.stop()
    log = server.output()
    assert "archive of past editions" in log and "?t=…" in log
    assert all(view_link(h).split("?t=")[1] not in log for h in emails.values())


def test_the_page_is_the_email_less_its_own_link_and_name(frozen):
    """With the reader's token, the page is their email byte for byte, but for the
    greeting's name and the link to the page itself."""
    from digest.render import Personal, Renderer, personalize
    from digest.select import digest_for_mask
    mask = section_mask(["food"])
    token = frozen.token(frozen.bob)
    frozen_edition = replace(edition(), frozen=True)
    rendered = Renderer(frozen.settings).edition(frozen_edition).render(
        digest_for_mask(frozen_edition, mask, frozen.settings))
    email_html = personalize(rendered, Personal("", token).substitutions()).html
    without_link, n = re.subn(r'<p [^>]*><a [^>]*class="view-link"[^>]*>View in your browser</a></p>', "", email_html)
    assert n == 1
    page = frozen.client.get(f"/digest/view/2026-11-25/{mask}", params={"t": token}).text
    assert page == without_link
