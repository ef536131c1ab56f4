"""Test sends (digest/testsend.py, `digest send --test-to`) and `preview --sections all`.

Through the strict SendGrid stand-in over real HTTP with the official client, or the
outbox without an API key: the message is the preview's, but for its [TEST] subject; it
goes only to editors and [editors] test_recipients; it writes no ledger row and freezes
nothing; and its links act on nobody, checked against the real web app.
"""

from __future__ import annotations

import email
import json
import re
from dataclasses import replace
from datetime import date
from email import policy

import lxml.html
import pytest

from digest.articles.importer import import_articles
from digest.config import ConfigError, load_settings
from digest.edition import freeze, load_edition
from digest.preview import ALL, preview
from digest.store import editors, utcnow
from digest.subscribers import store as subscriber_store
from digest.testsend import TestSendError, allowed_test_recipients, send_test
from digest.tokens import Signer
from tests.conftest import SECRET, write_article
from tests.fake_sendgrid import FakeSendGrid
from tests.stores import rows, store_url

DAY = date(2026, 11, 25)
EDITOR, DESK = "ed@example.com", "desk@example.org"


@pytest.fixture
def sg():
    with FakeSendGrid() as server:
        yield server


def add_editor(engine, address: str) -> None:
    with engine.begin() as conn:
        conn.execute(editors.insert().values(email=address, email_key=address.lower(), password_hash="x",
                                             created_at=utcnow()))


@pytest.fixture
def desk(site, sg, tmp_path):
    """The web app's store and settings with a day of stories, one reader (Riley, tech only),
    an editor, and SendGrid pointed at the stand-in."""
    settings = replace(site.settings, sendgrid_api_key=sg.api_key, sendgrid_host=sg.url,
                       test_recipients=(DESK,), postal_address="1 Example Street")
    folder = tmp_path / "stories"
    write_article(folder, "lead", section="world", featured=True, summary="The lead.")
    write_article(folder, "tech-one", section="tech", summary="A tech story.")
    write_article(folder, "food-one", section="food", summary="A food story.")
    assert not import_articles(site.engine, [str(folder)], settings).rejected
    subscriber_store.add(site.engine, "riley@example.com", "Riley", ("tech",))
    add_editor(site.engine, "Ed@Example.com")
    return site, settings


def ledger_and_editions(settings) -> tuple:
    return (rows(settings.database_url, "SELECT count(*) FROM ledger")[0][0],
            rows(settings.database_url, "SELECT count(*) FROM editions")[0][0])


def test_the_allowed_recipients_are_the_editors_and_the_configured_list(desk):
    site, settings = desk
    assert allowed_test_recipients(site.engine, settings) == {EDITOR, DESK}


def test_a_test_send_is_the_previewed_message_with_a_test_subject(desk, sg):
    site, settings = desk
    signer = Signer(SECRET)
    sent = send_test(site.engine, settings, DAY, signer, [EDITOR, DESK.upper()])
    assert (sent.via, sent.recipients, sent.exit_code) == ("sendgrid", [EDITOR, DESK.upper()], 0)
    assert len(sent.message_ids) == 2 and all(sent.message_ids)
    [request] = sg.requests
    assert request["status"] == 202
    html = preview(site.engine, settings, DAY, signer, sections=ALL).content.decode()
    text = preview(site.engine, settings, DAY, signer, sections=ALL, fmt="text").content.decode()
    for address in (EDITOR, DESK.upper()):
        [got] = sg.deliveries_to(address)
        assert got["subject"] == "[TEST] The Daily Digest, Wed 25 Nov: Lead" == sent.subject
        assert got["html"] == html and got["text"] == text  # the whole edition: every section
        assert "\nTECH\n" in got["text"] and "\nFOOD\n" in got["text"]
        assert got["headers"]["List-Unsubscribe"].startswith(f"<{settings.links_base}/unsubscribe/")
        assert "subscriber_id" not in got["custom_args"] and "edition" not in got["custom_args"]
    assert ledger_and_editions(settings) == (0, 0)  # no ledger row, nothing frozen


def test_a_test_of_a_readers_digest_cannot_unsubscribe_the_reader(desk, sg):
    site, settings = desk
    signer = Signer(SECRET)
    sent = send_test(site.engine, settings, DAY, signer, [EDITOR], subscriber="riley@example.com")
    [got] = sg.deliveries_to(EDITOR)
    assert "Good morning, Riley" in got["text"] and "\nTECH\n" in got["text"] and "FOOD" not in got["text"]
    assert sent.subject.startswith("[TEST] ")
    riley = subscriber_store.get(site.engine, email="riley@example.com")
    assert signer.manage_token(riley.id, riley.email) not in got["html"] + got["text"]
    # Riley's own preview but for the token: the same message.
    own = preview(site.engine, settings, DAY, signer, subscriber=riley.email).content.decode()
    nobody = signer.manage_token(0, "preview@example.com")
    assert own.replace(signer.manage_token(riley.id, riley.email), nobody) == got["html"]

    links = [a.get("href") for a in lxml.html.document_fromstring(got["html"]).iter("a")]
    unsubscribe = next(h for h in links if "/unsubscribe/" in h)
    preferences = next(h for h in links if "/preferences/" in h)
    path = unsubscribe.removeprefix("http://testserver")
    for r in (site.client.post(path, content=b"List-Unsubscribe=One-Click",
                               headers={"Content-Type": "application/x-www-form-urlencoded"}),
              site.client.get(preferences.removeprefix("http://testserver"))):
        assert "Riley" not in r.text and "riley@example.com" not in r.text
    header = got["headers"]["List-Unsubscribe"].strip("<>").removeprefix("http://testserver")
    site.client.post(header, content=b"List-Unsubscribe=One-Click",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert subscriber_store.get(site.engine, email="riley@example.com").status == "active"
    # The same click in Riley's real digest does unsubscribe Riley: the check above can fail.
    real = next(a.get("href") for a in lxml.html.document_fromstring(own).iter("a") if "/unsubscribe/" in a.get("href"))
    site.client.post(real.removeprefix("http://testserver"), content=b"List-Unsubscribe=One-Click",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert subscriber_store.get(site.engine, email="riley@example.com").status == "unsubscribed"


def test_a_test_send_works_on_a_frozen_edition_and_adds_no_ledger_row(desk, sg, tmp_path):
    site, settings = desk
    freeze(site.engine, load_edition(site.engine, DAY, settings), settings)
    before = ledger_and_editions(settings)
    assert before == (1, 1)
    write_article(tmp_path / "late", "late-story", section="tech", summary="Imported after the freeze.")
    import_articles(site.engine, [str(tmp_path / "late")], settings)
    send_test(site.engine, settings, DAY, Signer(SECRET), [DESK], sections=("tech",))
    [got] = sg.deliveries_to(DESK)
    assert "A tech story." in got["text"] and "Imported after the freeze" not in got["text"]  # the frozen stories
    assert ledger_and_editions(settings) == before
    assert rows(settings.database_url, "SELECT status FROM ledger") == [("pending",)]


def test_an_address_not_allowed_is_refused_by_name_and_nothing_is_sent(desk, sg):
    site, settings = desk
    with pytest.raises(TestSendError) as refused:
        send_test(site.engine, settings, DAY, Signer(SECRET), [EDITOR, "riley@example.com", "x@evil.example"])
    assert refused.value.exit_code == 2
    assert "riley@example.com, x@evil.example" in str(refused.value) and EDITOR not in str(refused.value)
    assert sg.requests == []


def test_what_sendgrid_refuses_is_said_with_the_sends_exit_statuses(desk, sg):
    site, settings = desk
    with pytest.raises(TestSendError) as refused:
        send_test(site.engine, replace(settings, sendgrid_api_key="SG.wrong"), DAY, Signer(SECRET), [EDITOR])
    assert refused.value.exit_code == 2 and "refused the API key" in str(refused.value)
    sg.inject("400", message="The from address does not match a verified Sender Identity")
    sent = send_test(site.engine, settings, DAY, Signer(SECRET), [EDITOR])
    assert sent.exit_code == 1 and sent.recipients == [] and sg.deliveries == []
    assert sent.problems == [{"email": EDITOR, "status": "failed", "reason": "SendGrid rejected the request "
                              "(HTTP 400): The from address does not match a verified Sender Identity"}]


def test_without_an_api_key_the_test_goes_to_the_outbox(desk, tmp_path):
    site, settings = desk
    settings = replace(settings, sendgrid_api_key="", outbox=str(tmp_path / "outbox"))
    signer = Signer(SECRET)
    sent = send_test(site.engine, settings, DAY, signer, [EDITOR], sections=("tech", "food"))
    assert (sent.via, sent.outbox) == ("outbox", str(tmp_path / "outbox" / "tests"))
    [path] = (tmp_path / "outbox" / "tests").glob("*.eml")
    msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert msg["Subject"] == sent.subject and msg["Subject"].startswith("[TEST] ") and msg["To"] == EDITOR
    html = msg.get_body(("html",)).get_content().replace("\r\n", "\n")  # the .eml's line ends are CRLF
    shown = preview(site.engine, settings, DAY, signer, sections=("tech", "food")).content.decode()
    assert html.rstrip("\n") == shown.rstrip("\n")
    assert ledger_and_editions(settings) == (0, 0)


def test_the_test_recipients_setting_is_checked(tmp_path):
    path = tmp_path / "digest.toml"
    path.write_text('[editors]\ntest_recipients = ["Desk@Example.org", "desk@example.org"]\n', encoding="utf-8")
    assert load_settings(path, env={}).test_recipients == ("desk@example.org",)
    for bad, why in (('test_recipients = "desk@example.org"', "must be a list of email addresses"),
                     ('test_recipients = ["not an address"]', "'not an address' is not an email address"),
                     ('recipients = ["desk@example.org"]', "unknown setting [editors] 'recipients'")):
        path.write_text(f"[editors]\n{bad}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=r"digest\.toml: .*" + re.escape(why)):
            load_settings(path, env={})


# -- the CLI, in a subprocess -----------------------------------------------------------------

@pytest.fixture
def cli_site(tmp_path, run_digest, sg):
    for name, section in (("lead", "world"), ("tech-one", "tech")):
        write_article(tmp_path / "stories", name, section=section, featured=name == "lead", summary="S.")
    env = {"DIGEST_SECRET_KEY": SECRET, "DIGEST_BASE_URL": "https://news.example.com/digest",
           "SENDGRID_API_HOST": sg.url, "SENDGRID_API_KEY": sg.api_key}
    (tmp_path / "digest.toml").write_text(f'[editors]\ntest_recipients = ["{DESK}"]\n', encoding="utf-8")
    assert run_digest("articles", "import", "stories", env=env).returncode == 0
    assert run_digest("subscribers", "add", "riley@example.com", "--sections", "tech", env=env).returncode == 0

    def run(*args):
        done = run_digest(*args, env=env)
        assert "Traceback" not in done.stderr + done.stdout
        return done
    return run


def test_the_cli_test_send(cli_site, sg, tmp_path):
    done = cli_site("send", "--date", "2026-11-25", "--test-to", DESK, "--subscriber", "riley@example.com")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"test send 2026-11-25: '[TEST] The Daily Digest, Wed 25 Nov: Lead' to {DESK} "
                                   "through SendGrid; no ledger row, nothing frozen")
    [got] = sg.deliveries_to(DESK)
    preview_html = cli_site("preview", "--date", "2026-11-25", "--sections", "tech").stdout
    assert got["html"] == preview_html  # Riley's digest (no name), with the links of nobody
    as_json = json.loads(cli_site("send", "--date", "2026-11-25", "--test-to", DESK, "--sections", "all",
                                  "--json").stdout)
    assert as_json["recipients"] == [DESK] and as_json["via"] == "sendgrid" and as_json["problems"] == []
    assert rows(store_url(tmp_path / "digest.db"), "SELECT count(*) FROM ledger") == [(0,)]


@pytest.mark.parametrize("args,code,said", [
    (("--test-to", "riley@example.com"), 2, "not allowed to get test sends: riley@example.com"),
    (("--test-to", DESK, "--dry-run"), 2, "--test-to cannot be combined with --dry-run"),
    (("--test-to", DESK, "--sandbox"), 2, "--test-to cannot be combined with --sandbox"),
    (("--test-to", DESK, "--retry", "failed"), 2, "--test-to cannot be combined with --retry"),
    (("--test-to", DESK, "--workers", "2"), 2, "--test-to cannot be combined with --workers"),
    (("--test-to", DESK, "--subscriber", "riley@example.com", "--sections", "tech"), 2, "not both"),
    (("--test-to", DESK, "--subscriber", "nobody@example.com"), 1, "nobody@example.com is not a subscriber"),
    (("--test-to", DESK, "--sections", "tech", "--date", "2026-01-01"), 1, "this digest would not be sent"),
    (("--sections", "tech"), 2, "--subscriber and --sections go with --test-to"),
])
def test_the_cli_refuses_what_does_not_go_with_a_test_send(cli_site, sg, args, code, said):
    done = cli_site("send", "--date", "2026-11-25", *args)
    assert done.returncode == code and said in done.stderr, done.stderr
    assert sg.requests == []


def test_preview_sections_all_is_the_whole_edition(cli_site):
    every = cli_site("preview", "--date", "2026-11-25", "--sections", "all", "--format", "text")
    assert every.returncode == 0, every.stderr
    named = cli_site("preview", "--date", "2026-11-25", "--sections", ",".join(load_settings(env={}).sections),
                     "--format", "text")
    assert every.stdout == named.stdout
    assert "\nTECH\n" in every.stdout and "/view/2026-11-25/8191?" in every.stdout  # every section's mask
