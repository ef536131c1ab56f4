"""The installed `digest` command, in a subprocess, on a temp folder: import, dry run, read the .eml files."""

import email
import json
import re
import subprocess
import sys
from email import policy
from pathlib import Path

from tests.conftest import REPO, SAMPLE, SAMPLE_DAY, SECRET, write_article


def read_eml(path: Path):
    msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    return msg, msg.get_body(("html",)).get_content(), msg.get_body(("plain",)).get_content()


def story_titles(html: str) -> list[str]:
    return re.findall(r'<h[13][^>]*><a [^>]*>([^<]+)</a>', html)


def test_dry_run_end_to_end(run_digest, tmp_path):
    env = {"DIGEST_SECRET_KEY": SECRET, "DIGEST_BASE_URL": "https://news.example.com/digest"}
    bad = tmp_path / "incoming"
    write_article(bad, "wrong-section", section="weather")
    (bad / "binary.md").write_bytes(b"\xff\xfe\x00garbage")
    r = run_digest("articles", "import", SAMPLE / "articles", bad, env=env)
    assert r.returncode == 1 and "rejected 2" in r.stdout
    assert "wrong-section.md" in r.stderr and "weather" in r.stderr and "binary.md" in r.stderr

    csv = tmp_path / "people.csv"
    csv.write_text((SAMPLE / "subscribers.csv").read_text() + "broken-address,Nobody,\nfood@example.com,Foodie,food\n")
    r = run_digest("subscribers", "import", csv, env=env)
    assert r.returncode == 1 and "line 10" in r.stderr and "imported 9" in r.stdout
    run_digest("subscribers", "unsubscribe", "pixel.player@example.com", env=env)

    r = run_digest("send", "--dry-run", "--date", SAMPLE_DAY, "--json", env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["recipients"] == 8 and summary["emails_written"] == 8 and summary["skipped_empty"] == 0
    outbox = tmp_path / "outbox" / SAMPLE_DAY
    files = sorted(p.name for p in outbox.glob("*.eml"))
    assert len(files) == 8 and "pixel.player@example.com.eml" not in files

    # The tech;science subscriber: the featured story, then tech, then science, nothing else.
    msg, html, text = read_eml(outbox / "dev.lab@example.com.eml")
    assert msg["To"] == "Dev Lab <dev.lab@example.com>"
    titles = story_titles(html)
    assert titles[0] == "Coastal states sign shared shipping-lane accord"
    listed = json.loads(run_digest("articles", "list", "--date", SAMPLE_DAY, "--json").stdout)
    by_title = {a["title"].replace("&", "&amp;"): a for a in listed}
    assert all(set(by_title[t]["sections"]) & {"tech", "science"} for t in titles[1:])
    assert len(titles) == len(set(titles))
    yesterday = json.loads(run_digest("articles", "list", "--date", "2026-11-24", "--json").stdout)
    assert not any(a["title"] in html for a in yesterday)  # nothing from other days

    # Headers, both parts, the links and escaping.
    unsub = re.fullmatch(r"<(https://news\.example\.com/digest/unsubscribe/[\w.-]+)>", msg["List-Unsubscribe"]).group(1)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f'href="{unsub}"' in html and unsub in text
    assert "dev.lab" not in unsub and "/preferences/" in html
    assert msg["Message-ID"] and msg["Date"] and msg["Subject"].startswith("The Daily Digest, Wed 25 Nov")
    assert len(html.encode()) < 102 * 1024

    _, html, text = read_eml(outbox / "riley.bold@example.org.eml")
    assert "Riley &lt;b&gt;Bold&lt;/b&gt; Tester" in html and "<b>Bold</b>" not in html
    assert "Riley <b>Bold</b> Tester" in text
    msg, _, _ = read_eml(outbox / "jo.smith@example.com.eml")
    assert msg["To"].addresses[0].display_name == "Smith, Jo"
    _, html, _ = read_eml(outbox / "casey.wander@example.org.eml")
    assert ("Q&amp;A: &quot;Fish &lt;and&gt; chips&quot; economics" in html
            or "Q&amp;A: \"Fish &lt;and&gt; chips\" economics" in html)

    # A dry run records nothing and freezes nothing.
    status = json.loads(run_digest("status", "--date", SAMPLE_DAY, "--json").stdout)
    assert status == {"date": SAMPLE_DAY, "counts": {"pending": 0, "sent": 0, "failed": 0, "unknown": 0},
                      "problems": []}


def test_dry_run_skips_empty_digests_and_needs_no_keys(run_digest, tmp_path):
    write_article(tmp_path / "a", "only-world", section="world")
    run_digest("articles", "import", tmp_path / "a")
    run_digest("subscribers", "add", "w@example.com", "--sections", "world")
    run_digest("subscribers", "add", "f@example.com", "--sections", "food")
    r = run_digest("send", "--dry-run", "--date", "2026-11-25", "--outbox", "out")
    assert r.returncode == 0, r.stderr
    assert "1 emails written" in r.stdout and "1 skipped" in r.stdout
    assert "throwaway key" in r.stderr
    assert [p.name for p in (tmp_path / "out").glob("*.eml")] == ["w@example.com.eml"]


def test_outbox_replaces_its_own_files_only(run_digest, tmp_path):
    write_article(tmp_path / "a", "only-world", section="world")
    run_digest("articles", "import", tmp_path / "a")
    run_digest("subscribers", "add", "w@example.com", "--sections", "world")
    run_digest("subscribers", "add", "v@example.com", "--sections", "world")
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "precious.eml").write_text("not ours")
    assert run_digest("send", "--dry-run", "--date", "2026-11-25", "--outbox", "mail").returncode == 0
    run_digest("subscribers", "unsubscribe", "v@example.com")
    assert run_digest("send", "--dry-run", "--date", "2026-11-25", "--outbox", "mail").returncode == 0
    assert sorted(p.name for p in (tmp_path / "mail").glob("*.eml")) == ["precious.eml", "w@example.com.eml"]
    (tmp_path / "afile").write_text("x")
    r = run_digest("send", "--dry-run", "--date", "2026-11-25", "--outbox", "afile")
    assert r.returncode == 2 and "outbox afile" in r.stderr and "Traceback" not in r.stderr


def test_status_of_an_unsent_edition_is_not_success(run_digest):
    r = run_digest("status", "--date", "2026-11-25", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["counts"]["sent"] == 0 and "not been sent" in r.stderr


def test_send_without_stories_fails_loudly(run_digest):
    run_digest("subscribers", "add", "w@example.com")
    r = run_digest("send", "--dry-run", "--date", "2026-11-25")
    assert r.returncode == 1 and "no stories" in r.stderr


def test_preview_formats(run_digest, tmp_path):
    run_digest("articles", "import", SAMPLE / "articles")
    run_digest("subscribers", "add", "jo@example.com", "--name", "Jo", "--sections", "gaming")
    env = {"DIGEST_SECRET_KEY": SECRET}
    html = run_digest("preview", "--date", SAMPLE_DAY, "--subscriber", "JO@example.com", env=env)
    assert html.returncode == 0 and html.stdout.startswith("<!doctype html>") and "Good morning, Jo" in html.stdout
    text = run_digest("preview", "--date", SAMPLE_DAY, "--sections", "food,travel", "--format", "text", env=env)
    assert "FOOD" in text.stdout and "TRAVEL" in text.stdout and "GAMING" not in text.stdout
    r = run_digest("preview", "--date", SAMPLE_DAY, "--subscriber", "jo@example.com", "--format", "eml",
                   "--out", "jo.eml", env=env)
    assert r.returncode == 0
    msg, html_part, _ = read_eml(tmp_path / "jo.eml")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert run_digest("preview", "--date", SAMPLE_DAY).returncode == 2  # neither --subscriber nor --sections
    assert run_digest("preview", "--date", SAMPLE_DAY, "--subscriber", "nobody@example.com").returncode == 1
    assert run_digest("preview", "--date", "2026-01-01", "--sections", "food").returncode == 1  # empty digest


def test_send_without_dry_run_needs_the_api_key(run_digest):
    r = run_digest("send", "--date", SAMPLE_DAY, "--yes", env={"DIGEST_SECRET_KEY": SECRET})
    assert r.returncode == 2 and "SENDGRID_API_KEY" in r.stderr and "Traceback" not in r.stderr


def test_non_editable_install_finds_its_templates(tmp_path):
    """`pip install .` (not editable) puts everything under `digest`: the templates/ and
    subscribers/ folders become digest.templates and digest.subscribers, and no top-level
    package of those common names lands in site-packages."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(REPO)], check=True, capture_output=True)
    assert (target / "digest" / "templates" / "digest.mjml.j2").is_file()
    assert (target / "digest" / "templates" / "web" / "preferences.html.j2").is_file()
    assert (target / "digest" / "subscribers" / "store.py").is_file()
    assert (target / "digest" / "migrations" / "script.py.mako").is_file()
    assert not (target / "templates").exists() and not (target / "subscribers").exists()
    code = ("import digest.render as r, sys; from digest.config import load_settings; "
            "import digest.subscribers.store, digest.web.app; "
            "assert str(r.TEMPLATES_DIR).startswith(sys.argv[1]), r.TEMPLATES_DIR; "
            "r.Renderer(load_settings(env={})); print('ok')")
    out = subprocess.run([sys.executable, "-c", code, str(target)], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "ok", out.stderr


def test_outbox_without_dry_run_is_a_usage_error(run_digest):
    r = run_digest("send", "--date", SAMPLE_DAY, "--outbox", "x")
    assert r.returncode == 2 and "--outbox goes with --dry-run" in r.stderr


def test_outbox_marker_cannot_delete_files_outside_the_folder(tmp_path, settings):
    from digest.deliver.outbox import MARKER, OutboxTransport
    outbox = tmp_path / "outbox"
    (outbox / "sub").mkdir(parents=True)
    victims = [tmp_path / "victim.txt", tmp_path / "victim.eml", outbox / "sub" / "inner.eml", outbox / ".hidden.eml"]
    for v in victims:
        v.write_text("keep me")
    (outbox / "ours.eml").write_text("an earlier run's")
    (outbox / MARKER).write_text("../victim.txt\n../victim.eml\n" + str(tmp_path / "victim.eml") +
                                 "\nsub/inner.eml\n.hidden.eml\nours.eml\n")
    OutboxTransport(outbox, settings).prepare()
    assert all(v.read_text() == "keep me" for v in victims)
    assert not (outbox / "ours.eml").exists()


def test_addresses_differing_only_in_unsafe_characters_get_their_own_files(cli, workdir):
    write_article(workdir / "a", "only-world", section="world")
    cli("articles", "import", workdir / "a")
    people = ["a_b@example.com", "a=b@example.com", "a'b@example.com", "a#b@example.com"]
    for address in people:
        assert cli("subscribers", "add", address, "--sections", "world").exit_code == 0
    r = cli("send", "--dry-run", "--date", "2026-11-25", "--outbox", "out")
    assert r.exit_code == 0 and "4 emails written" in r.stdout
    files = sorted((workdir / "out").glob("*.eml"))
    assert len(files) == 4 and "a_b@example.com.eml" in [f.name for f in files]  # a safe address keeps its plain name
    assert sorted(read_eml(f)[0]["To"].addresses[0].addr_spec for f in files) == sorted(people)


def test_dates_past_9998_or_before_1970_are_a_clear_usage_error(cli, workdir):
    for command in (("send", "--dry-run"), ("preview", "--sections", "world"), ("articles", "list"), ("status",)):
        for day in ("9999-12-31", "0001-01-01"):
            r = cli(*command, "--date", day)
            assert r.exit_code == 2, (command, day, r.output)
            assert r.stderr == "error: --date must be a date between 1970-01-01 and 9998-12-31\n"
