"""`digest check`: the edition's quality report (digest/check.py).

A clean edition passes; then each problem is planted on its own, in the stories, the
settings or (for what the stories cannot break) a copy of the templates, and must be
the one problem found.  The notes likewise.  At the end the real CLI in a subprocess:
the text and --json reports and the exit statuses 0, 1 and 2.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import date

import pytest
from sqlalchemy import event

from digest.articles.importer import import_articles
from digest.check import WHOLE_EDITION, check_edition
from digest.render import TEMPLATES_DIR, Renderer
from digest.subscribers import store as subscriber_store
from digest.tokens import Signer
from tests.conftest import SECRET, write_article

DAY = date(2026, 11, 25)
POSTAL = "The Daily Digest, 1 Example Street, Exampleton EX1 2MP"
IMAGE = "https://news.example.com/img/harbour.jpg"
CRANES = "https://news.example.com/img/cranes.jpg"
LONG = 6600  # six stories with URLs this long: over CLIP_BUDGET with teasers, under it without


@pytest.fixture
def good(settings):
    return replace(settings, postal_address=POSTAL)


def clean_stories(folder) -> dict[str, dict]:
    """A clean edition: a featured lead with an image, stories in world and tech."""
    return {
        "lead": dict(section="world", featured=True, image=IMAGE, image_alt="The harbour at dawn",
                     summary="The lead story's teaser.", priority=1),
        "world-two": dict(section="world", summary="A second world story.", image=CRANES, image_alt="Cranes"),
        "tech-one": dict(section="tech", summary="A tech story."),
        "tech-two": dict(section="tech", summary="Another tech story."),
    }


def build(engine, settings, tmp_path, stories: dict[str, dict], people=(("w@example.com", ("world",)),
                                                                        ("t@example.com", ("tech",)),
                                                                        ("wt@example.com", ("world", "tech")))):
    folder = tmp_path / "stories"
    for name, fields in stories.items():
        write_article(folder, name, **fields)
    report = import_articles(engine, [str(folder)], settings)
    assert not report.rejected, report.rejected
    for email, sections in people:
        subscriber_store.add(engine, email, "", sections)


def check(engine, settings, renderer=None):
    return check_edition(engine, settings, DAY, Signer(SECRET), renderer=renderer)


def codes(findings) -> list[str]:
    return [f.code for f in findings]


def test_a_clean_edition_passes(engine, good, tmp_path):
    build(engine, good, tmp_path, clean_stories(tmp_path))
    report = check(engine, good)
    assert report.problems == [] and report.notes == [] and report.exit_code == 0
    # world, tech, world+tech, and the whole edition (every offered section)
    assert (report.stories, report.subscribers, report.digests) == (4, 3, 4)


def story_plant(name, **fields):
    def plant(stories):
        stories[name] = {**stories.get(name, {}), **fields}
    return plant


PLANTS = {
    "an http link": (story_plant("tech-one", url="http://news.example.com/tech-one"), "link-not-https", "tech-one"),
    "an http image": (story_plant("world-two", image="http://news.example.com/img/cranes.jpg"),
                      "image-not-https", "world-two"),
    "an image without alt": (story_plant("world-two", image_alt=""), "image-no-alt", "world-two"),
    "two stories with one URL": (story_plant("tech-two", url="https://news.example.com/tech-one"),
                                 "duplicate-url", "tech-one, tech-two"),
    # Nobody follows gaming: only the whole-edition check can see it.
    "an http link in a section nobody follows": (
        story_plant("gaming-one", section="gaming", summary="A game.", url="http://news.example.com/g"),
        "link-not-https", "gaming-one"),
}


@pytest.mark.parametrize("plant,code,where", PLANTS.values(), ids=PLANTS.keys())
def test_each_planted_story_problem_is_found_on_its_own(engine, good, tmp_path, plant, code, where):
    stories = clean_stories(tmp_path)
    plant(stories)
    build(engine, good, tmp_path, stories)
    report = check(engine, good)
    assert codes(report.problems) == [code], report.problems
    assert report.problems[0].where == where
    assert report.exit_code == 1


SETTINGS_PLANTS = {
    "no postal address": ({"postal_address": ""}, "no-postal-address", "settings"),
    "no DIGEST_BASE_URL": ({"base_url": ""}, "no-base-url", "settings"),
    "DIGEST_BASE_URL not https": ({"base_url": "http://news.example.com/digest"}, "no-base-url", "settings"),
    "no lang": ({"lang": ""}, "no-lang", f"{WHOLE_EDITION} (0 subscribers)"),
}


@pytest.mark.parametrize("change,code,where", SETTINGS_PLANTS.values(), ids=SETTINGS_PLANTS.keys())
def test_each_planted_settings_problem_is_found_on_its_own(engine, good, tmp_path, change, code, where):
    build(engine, good, tmp_path, clean_stories(tmp_path))
    report = check(engine, replace(good, **change))
    assert set(codes(report.problems)) == {code}, report.problems
    assert where in [f.where for f in report.problems]


def test_a_digest_over_gmails_clip(engine, good, tmp_path):
    """Titles and teasers are clipped, URLs are not: six tech stories with 9,000-character
    URLs (each linked twice) are over 102 KB even without teasers, in every digest that
    holds tech."""
    stories = clean_stories(tmp_path)
    for i in range(6):
        stories[f"long-{i:02}"] = dict(section="tech", summary="Long.", priority=50,
                                       url=f"https://news.example.com/{i:02}/" + "x" * 9000)
    build(engine, replace(good, per_section=6), tmp_path, stories)
    report = check(engine, replace(good, per_section=6))
    assert set(codes(report.problems)) == {"over-clip"}
    clipped = {f.where for f in report.problems}
    assert clipped == {"digest of Tech (1 subscriber)", "digest of World and Tech (1 subscriber)",
                       f"{WHOLE_EDITION} (0 subscribers)"}
    assert "Gmail clips" in report.problems[0].message


def test_a_digest_near_the_clip_is_sent_compact_and_that_is_a_note(engine, good, tmp_path):
    stories = clean_stories(tmp_path)
    for i in range(6):
        stories[f"long-{i:02}"] = dict(section="tech", summary="y" * 280, priority=50,
                                       image=f"https://news.example.com/img/{i}.jpg", image_alt="A picture",
                                       url=f"https://news.example.com/{i:02}/" + "x" * LONG)
    settings = replace(good, per_section=6)
    build(engine, settings, tmp_path, stories, people=(("t@example.com", ("tech",)),))
    report = check(engine, settings)
    assert report.problems == [] and set(codes(report.notes)) == {"compacted"}, report.notes
    assert [n.where for n in report.notes] == ["digest of Tech (1 subscriber)", f"{WHOLE_EDITION} (0 subscribers)"]
    assert "bytes of HTML" in report.notes[0].message


def planted_templates(tmp_path, old: str, new: str):
    """A copy of the templates with one piece of the MJML changed."""
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, folder, ignore=shutil.ignore_patterns("__pycache__", "web"))
    mjml = folder / "digest.mjml.j2"
    source = mjml.read_text(encoding="utf-8")
    assert old in source
    mjml.write_text(source.replace(old, new), encoding="utf-8")
    return folder


TEMPLATE_PLANTS = {
    "no unsubscribe link": ('&nbsp;&middot;&nbsp; <a href="{{ links_base }}/unsubscribe/{{ t.token }}" '
                            'class="footer-link">Unsubscribe</a>', "", "no-unsubscribe-link"),
    "no preheader": ("<mj-preview>{{ s.preheader }}{{ preheader_filler }}</mj-preview>", "", "no-preheader"),
    "a relative link": ('<p class="signoff">Curated by humans', '<p class="signoff"><a href="/about">About</a> '
                        'Curated by humans', "link-not-https"),
}


@pytest.mark.parametrize("old,new,code", TEMPLATE_PLANTS.values(), ids=TEMPLATE_PLANTS.keys())
def test_each_planted_template_problem_is_found_on_its_own(engine, good, tmp_path, old, new, code):
    build(engine, good, tmp_path, clean_stories(tmp_path))
    renderer = Renderer(good, templates_dir=planted_templates(tmp_path, old, new))
    report = check(engine, good, renderer)
    assert set(codes(report.problems)) == {code}, report.problems
    assert len(report.problems) == report.digests  # every digest has it, each is named
    assert check(engine, good).problems == []  # the real templates have none of it


def test_two_featured_stories_are_a_problem_unless_allowed(engine, good, tmp_path):
    stories = clean_stories(tmp_path)
    stories["tech-one"]["featured"] = True
    build(engine, good, tmp_path, stories)
    report = check(engine, good)
    assert report.notes == [] and codes(report.problems) == ["two-featured"] and report.exit_code == 1
    assert report.problems[0].where == "lead" and "'lead' leads" in report.problems[0].message
    allowed = check_edition(engine, good, DAY, Signer(SECRET), allow=["two-featured"])
    assert allowed.problems == [] and codes(allowed.notes) == ["two-featured"] and allowed.exit_code == 0


def test_a_story_without_summary_is_a_problem(engine, good, tmp_path):
    stories = clean_stories(tmp_path)
    stories["tech-two"] = dict(section="tech", body="")
    build(engine, good, tmp_path, stories)
    report = check(engine, good)
    assert report.notes == [] and codes(report.problems) == ["no-summary"]
    assert report.problems[0].where == "tech-two"


def test_a_followed_section_with_no_story_says_whom_it_leaves_with_the_lead_or_nothing(engine, good, tmp_path):
    people = (("w@example.com", ("world",)), ("g@example.com", ("gaming",)), ("g2@example.com", ("gaming",)),
              ("gt@example.com", ("gaming", "tech")))
    build(engine, good, tmp_path, clean_stories(tmp_path), people)
    report = check(engine, good)
    assert codes(report.problems) == ["empty-section"] and codes(report.notes) == ["lead-only"]
    (gaming,), (lead_only,) = report.problems, report.notes
    assert gaming.where == "gaming"
    assert gaming.message == ("no Gaming story today; 3 subscribers follow it: 2 of them would get only "
                              "the lead story and 0 no email")
    assert lead_only.message.startswith("2 subscribers get only the lead story")
    # Without a lead story, and with send_lead_only off, the same readers get nothing.
    stories = clean_stories(tmp_path)
    stories["lead"]["featured"] = False
    off = replace(good, send_lead_only=False)
    (tmp_path / "stories" / "lead.md").unlink()
    write_article(tmp_path / "stories", "lead", **stories["lead"])
    import_articles(engine, [str(tmp_path / "stories")], off)
    report = check(engine, off)
    assert [n.message for n in report.problems if n.code == "empty-section"] == [
        "no Gaming story today; 3 subscribers follow it: 0 of them would get only the lead story and 2 no email"]
    assert [n.message for n in report.notes if n.code == "no-digest"] == [
        "2 subscribers get no email: their sections have no story today"]


def test_a_day_without_stories_is_a_problem(engine, good):
    report = check(engine, good)
    assert codes(report.problems) == ["no-stories"] and report.exit_code == 1


def test_the_audience_is_read_in_one_grouped_query_whatever_its_size(engine, good, tmp_path):
    build(engine, good, tmp_path, clean_stories(tmp_path))
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    def subscriber_queries():
        statements.clear()
        check(engine, good)
        return [s for s in statements if "FROM subscribers" in s]

    few = subscriber_queries()
    for i in range(60):
        subscriber_store.add(engine, f"reader{i}@example.com", "", [("world",), ("tech",), ()][i % 3])
    assert subscriber_queries() == few and len(few) == 1 and "GROUP BY" in few[0]


def test_check_changes_nothing(engine, good, tmp_path):
    from tests.stores import rows
    build(engine, good, tmp_path, clean_stories(tmp_path))
    check(engine, good)
    assert rows(good.database_url, "SELECT count(*) FROM editions") == [(0,)]
    assert rows(good.database_url, "SELECT count(*) FROM ledger") == [(0,)]


# -- the CLI, in a subprocess ---------------------------------------------------------------

def test_the_cli_report_json_and_exit_statuses(run_digest, tmp_path):
    env = {"DIGEST_BASE_URL": "https://news.example.com/digest", "DIGEST_SECRET_KEY": SECRET}
    stories = clean_stories(tmp_path)
    for name, fields in stories.items():
        write_article(tmp_path / "stories", name, **fields)
    assert run_digest("articles", "import", "stories", env=env).returncode == 0
    assert run_digest("subscribers", "add", "wt@example.com", "--sections", "world,tech", env=env).returncode == 0
    (tmp_path / "digest.toml").write_text(f'postal_address = "{POSTAL}"\n', encoding="utf-8")

    clean = run_digest("check", "--date", DAY.isoformat(), env=env)
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.startswith("check 2026-11-25: 0 problem(s), 0 note(s); 4 stories, 2 digest(s)")
    assert "Traceback" not in clean.stderr

    write_article(tmp_path / "stories", "tech-one", section="tech", summary="x", url="http://news.example.com/t")
    assert run_digest("articles", "import", "stories", env=env).returncode == 0
    found = run_digest("check", "--date", DAY.isoformat(), env=env)
    assert found.returncode == 1
    assert ("problem [link-not-https] tech-one: a link is not an absolute https URL: http://news.example.com/t"
            in found.stdout.splitlines())
    as_json = run_digest("check", "--date", DAY.isoformat(), "--json", env=env)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert set(report) == {"date", "ok", "frozen", "stories", "subscribers", "digests", "problems", "notes"}
    assert report["ok"] is False and report["date"] == "2026-11-25"
    assert report["problems"] == [{"code": "link-not-https", "where": "tech-one",
                                   "message": "a link is not an absolute https URL: http://news.example.com/t"}]

    accepted = run_digest("check", "--date", DAY.isoformat(), "--allow", "link-not-https, empty-section", env=env)
    assert accepted.returncode == 0, accepted.stdout
    assert "note [link-not-https] tech-one" in accepted.stdout
    unknown = run_digest("check", "--date", DAY.isoformat(), "--allow", "frozen,typo", env=env)
    assert unknown.returncode == 2 and "--allow: frozen, typo are not a problem" in unknown.stderr

    bad_date = run_digest("check", "--date", "2026-13-01", env=env)
    (tmp_path / "digest.toml").write_text("per_section = 99\n", encoding="utf-8")
    bad_config = run_digest("check", "--date", DAY.isoformat(), env=env)
    assert (bad_date.returncode, bad_config.returncode) == (2, 2)
    assert "--date" in bad_date.stderr and "per_section" in bad_config.stderr
    assert "Traceback" not in bad_date.stderr + bad_config.stderr
