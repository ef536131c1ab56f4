"""Editors' verbs on stories (issue 11): withdraw and restore, refused once the edition is
frozen and recorded; which of several featured stories leads; times in the newsletter's zone."""

from __future__ import annotations

import os
from datetime import date

import pytest

from digest.articles.curation import CurationError, changes, feature, move, restore, set_priority, withdraw
from digest.articles.importer import import_articles
from digest.articles.repository import articles_published_on
from digest.edition import freeze, load_edition
from digest.select import lead_story, select_digest
from digest.store import open_store
from digest.subscribers import store as subscriber_store
from tests.conftest import write_article

DAY = date(2026, 11, 25)


@pytest.fixture
def day_of_stories(tmp_path, engine, settings):
    folder = tmp_path / "content"
    write_article(folder, "lead", featured=True, sections=["world"])
    write_article(folder, "storm", section="world")
    write_article(folder, "chips", section="tech")
    assert import_articles(engine, [folder], settings).rejected == []
    return folder


def ids(engine, settings, **kw) -> list[str]:
    return [a.id for a in articles_published_on(engine, DAY, settings.tz, **kw)]


def test_a_withdrawn_story_leaves_the_edition_and_a_reimport_does_not_bring_it_back(
        engine, settings, day_of_stories):
    assert withdraw(engine, "storm", settings, "ed@example.com") == DAY
    assert sorted(ids(engine, settings)) == ["chips", "lead"]
    assert "storm" not in [a.id for a in load_edition(engine, DAY, settings).articles]
    assert ids(engine, settings, withdrawn=True) == ["storm"]
    report = import_articles(engine, [day_of_stories], settings)
    assert report.updated == 3 and "storm" not in ids(engine, settings)
    assert any("storm" in why and "withdrawn" in why for _, why in report.warnings)
    restore(engine, "storm", settings, "ed@example.com")
    assert "storm" in ids(engine, settings)
    assert [(c.action, c.who) for c in changes(engine, ["storm"])] == [("withdraw", "ed@example.com"),
                                                                       ("restore", "ed@example.com")]


def test_withdraw_and_restore_say_why_they_cannot(engine, settings, day_of_stories):
    with pytest.raises(CurationError, match="no story has the id 'nope'"):
        withdraw(engine, "nope", settings, "ed")
    with pytest.raises(CurationError, match="already in its edition"):
        restore(engine, "storm", settings, "ed")
    withdraw(engine, "storm", settings, "ed")
    with pytest.raises(CurationError, match="already withdrawn"):
        withdraw(engine, "storm", settings, "ed")
    subscriber_store.add(engine, "a@example.com", "A", ("world",))
    freeze(engine, load_edition(engine, DAY, settings), settings)
    for verb, story in ((withdraw, "chips"), (restore, "storm")):
        with pytest.raises(CurationError, match="the edition of 2026-11-25 is frozen"):
            verb(engine, story, settings, "ed")
    assert [c.action for c in changes(engine, ["storm", "chips"])] == ["withdraw"]  # refusals change nothing
    assert "storm" not in [a.id for a in load_edition(engine, DAY, settings).articles]


def test_cli_withdraw_restore_and_list(cli, workdir):
    folder = workdir / "content"
    write_article(folder, "lead", featured=True, sections=["world"])
    write_article(folder, "storm", section="world")
    assert cli("articles", "import", folder).exit_code == 0
    done = cli("articles", "withdraw", "storm")
    assert done.exit_code == 0 and done.stdout == "withdrew storm from the edition of 2026-11-25\n"
    listed = cli.json("articles", "list", "--date", "2026-11-25", "--json")
    assert [(a["id"], a["withdrawn"]) for a in listed] == [("lead", False), ("storm", True)]
    text = cli("articles", "list", "--date", "2026-11-25")
    assert text.stdout.splitlines()[-1].startswith("- ") and "1 withdrawn" in text.stderr
    assert cli("articles", "withdraw", "storm").exit_code == 1
    assert cli("articles", "restore", "storm").exit_code == 0
    missing = cli("articles", "restore", "nope")
    assert missing.exit_code == 1 and "no story has the id 'nope'" in missing.stderr


def test_two_featured_stories_are_a_warning_naming_the_lead(cli, workdir):
    folder = workdir / "content"
    write_article(folder, "first", featured=True, priority=10, sections=["world"])
    write_article(folder, "second", featured=True, priority=5, sections=["tech"])
    imported = cli("articles", "import", folder)
    assert imported.exit_code == 0  # a warning, not a rejection
    assert "2 stories are featured on 2026-11-25; 'second' leads" in imported.stderr
    assert "'first' appear in their sections only" in imported.stderr
    listed = cli("articles", "list", "--date", "2026-11-25")
    assert "'second' leads" in listed.stderr


def test_articles_list_shows_times_in_the_newsletter_zone(cli, workdir):
    (workdir / "digest.toml").write_text('timezone = "America/New_York"\n', encoding="utf-8")
    write_article(workdir / "content", "evening", published="2026-11-26T02:30:00Z")  # 21:30 on the 25th there
    assert cli("articles", "import", workdir / "content").exit_code == 0
    listed = cli("articles", "list", "--date", "2026-11-25")
    assert "2026-11-25 21:30 EST" in listed.stdout, listed.stdout
    assert cli("articles", "list", "--date", "2026-11-26").stdout == ""


def test_a_url_argument_is_shown_as_given_not_mangled(cli, workdir):
    result = cli("articles", "import", "ftp://news.example.com/feed.json")
    assert result.exit_code == 1
    assert "rejected ftp://news.example.com/feed.json: only http(s) URLs can be imported" in result.stderr


def test_subscribers_list_json_has_the_id_sendgrid_events_carry(cli, workdir):
    assert cli("subscribers", "add", "ann@example.com", "--sections", "world").exit_code == 0
    [ann] = cli.json("subscribers", "list", "--json")
    assert isinstance(ann["id"], int) and ann["email"] == "ann@example.com"


@pytest.mark.parametrize("url", ["http://[bad", "http://x.example:99999/feed"])
def test_a_malformed_url_is_a_rejection_not_a_traceback(cli, workdir, url):
    result = cli("articles", "import", url)
    assert result.exit_code == 1 and f"rejected {url}: only http(s) URLs can be imported" in result.stderr


@pytest.mark.parametrize("toml,where", [('[feeds]\nurls = ["http://[bad"]\n', "[feeds] urls"),
                                        ('base_url = "http://[bad"\n', "base_url")])
def test_a_malformed_url_in_the_config_is_named(cli, workdir, toml, where):
    (workdir / "digest.toml").write_text(toml, encoding="utf-8")
    result = cli("articles", "list")
    assert result.exit_code == 2 and f"{where}: 'http://[bad'" in result.stderr


def lead(engine, settings) -> str:
    return lead_story(load_edition(engine, DAY, settings).articles).id


def world(engine, settings) -> list[str]:
    """The World stories of a World reader's digest, in their order."""
    digest = select_digest(load_edition(engine, DAY, settings), ("world",), settings)
    return [a.id for block in digest.sections for a in block.stories]


def test_feature_makes_the_lead_and_unfeatures_the_others_all_recorded(engine, settings, day_of_stories):
    write_article(day_of_stories, "second-lead", featured=True, priority=0, section="tech")
    import_articles(engine, [day_of_stories], settings)
    assert lead(engine, settings) == "second-lead"
    assert feature(engine, "storm", settings, "ed@example.com") == DAY
    assert lead(engine, settings) == "storm"
    assert [a.id for a in articles_published_on(engine, DAY, settings.tz) if a.featured] == ["storm"]
    log = [(c.article_id, c.action, c.who) for c in changes(engine, ["lead", "second-lead", "storm"])]
    assert log == [("lead", "unfeature", "ed@example.com"), ("second-lead", "unfeature", "ed@example.com"),
                   ("storm", "feature", "ed@example.com")]
    with pytest.raises(CurationError, match="'storm' is already the lead story of 2026-11-25"):
        feature(engine, "storm", settings, "ed")
    withdraw(engine, "chips", settings, "ed")
    with pytest.raises(CurationError, match="cannot feature 'chips': it is withdrawn"):
        feature(engine, "chips", settings, "ed")


def test_priority_and_moves_reorder_a_section_as_readers_get_it(engine, settings, day_of_stories):
    write_article(day_of_stories, "quake", section="world", published="2026-11-25T08:00:00Z")
    write_article(day_of_stories, "vote", section="world", published="2026-11-25T09:00:00Z")
    import_articles(engine, [day_of_stories], settings)
    assert world(engine, settings) == ["storm", "quake", "vote"]  # equal priorities: by publication time
    set_priority(engine, "vote", settings, "ed@example.com", 1)
    assert world(engine, settings) == ["vote", "storm", "quake"]
    move(engine, "quake", settings, "ed@example.com", "world", up=True)
    assert world(engine, settings) == ["vote", "quake", "storm"]
    move(engine, "vote", settings, "ed@example.com", "world", up=False)
    assert world(engine, settings) == ["quake", "vote", "storm"]
    with pytest.raises(CurationError, match="'quake' is already first in world"):
        move(engine, "quake", settings, "ed", "world", up=True)
    with pytest.raises(CurationError, match="'chips' is not among the world stories"):
        move(engine, "chips", settings, "ed", "world", up=True)
    with pytest.raises(CurationError, match="within ±1,000,000,000"):
        set_priority(engine, "quake", settings, "ed", 10**10)
    details = [(c.article_id, c.detail) for c in changes(engine, ["vote", "quake"])]
    assert details == [("vote", "100 → 1"), ("quake", "100 → 99"), ("vote", "1 → 99")]


def test_a_move_pinned_by_its_neighbours_numbers_the_section(engine, settings, tmp_path):
    """C up past B, under A (99, later than C): no priority of C's own fits, so B makes way."""
    folder = tmp_path / "pinned"
    write_article(folder, "a", section="world", priority=99, published="2026-11-25T10:00:00Z")
    write_article(folder, "b", section="world", priority=100, published="2026-11-25T08:00:00Z")
    write_article(folder, "c", section="world", priority=100, published="2026-11-25T09:00:00Z")
    import_articles(engine, [folder], settings)
    assert world(engine, settings) == ["a", "b", "c"]
    move(engine, "c", settings, "ed", "world", up=True)
    assert world(engine, settings) == ["a", "c", "b"]
    assert [(c.article_id, c.detail) for c in changes(engine, ["a", "b", "c"])] == [("b", "100 → 101")]


def test_a_reimport_keeps_what_an_editor_set(engine, settings, day_of_stories):
    """The files still say lead is featured and storm has priority 100: the editor's choices stand."""
    feature(engine, "storm", settings, "ed")
    set_priority(engine, "chips", settings, "ed", 3)
    report = import_articles(engine, [day_of_stories], settings)
    assert report.updated == 3 and report.rejected == []
    assert lead(engine, settings) == "storm"
    stories = {a.id: a for a in articles_published_on(engine, DAY, settings.tz)}
    assert (stories["lead"].featured, stories["chips"].priority) == (False, 3)
    # Fields no editor touched still follow the file.
    write_article(day_of_stories, "chips", section="tech", title="Chips, corrected", priority=50)
    import_articles(engine, [day_of_stories], settings)
    chips = next(a for a in articles_published_on(engine, DAY, settings.tz) if a.id == "chips")
    assert (chips.title, chips.priority) == ("Chips, corrected", 3)


def test_feature_and_priority_are_refused_once_frozen(engine, settings, day_of_stories):
    subscriber_store.add(engine, "a@example.com", "A", ("world",))
    freeze(engine, load_edition(engine, DAY, settings), settings)
    with pytest.raises(CurationError, match="cannot feature 'storm': the edition of 2026-11-25 is frozen"):
        feature(engine, "storm", settings, "ed")
    with pytest.raises(CurationError, match="cannot reorder 'storm': the edition of 2026-11-25 is frozen"):
        set_priority(engine, "storm", settings, "ed", 1)
    assert changes(engine, ["storm", "lead"]) == []


def test_cli_feature_and_update_priority_record_who(cli, workdir):
    folder = workdir / "content"
    write_article(folder, "lead", featured=True, sections=["world"])
    write_article(folder, "storm", section="world")
    assert cli("articles", "import", folder).exit_code == 0
    done = cli("articles", "feature", "storm")
    assert done.exit_code == 0 and done.stdout == "storm leads the edition of 2026-11-25\n"
    listed = {a["id"]: a for a in cli.json("articles", "list", "--date", "2026-11-25", "--json")}
    assert (listed["storm"]["featured"], listed["lead"]["featured"]) == (True, False)
    done = cli("articles", "update", "lead", "--priority", "7")
    assert done.exit_code == 0 and done.stdout == "lead has priority 7 in the edition of 2026-11-25\n"
    assert cli.json("articles", "list", "--date", "2026-11-25", "--json")[0]["priority"] == 7
    again = cli("articles", "feature", "storm")
    assert again.exit_code == 1 and "already the lead story" in again.stderr
    missing = cli("articles", "update", "nope", "--priority", "1")
    assert missing.exit_code == 1 and "no story has the id 'nope'" in missing.stderr
    assert cli("articles", "update", "lead").exit_code == 2  # --priority is required
    log = changes(open_store(os.environ["DIGEST_DATABASE_URL"]), ["storm", "lead"])
    assert [c.action for c in log] == ["unfeature", "feature", "priority"]
    assert all(c.who.endswith("(cli)") and c.at for c in log)
