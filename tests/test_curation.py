"""Editors' verbs on stories (issue 11): withdraw and restore, refused once the edition is
frozen and recorded; which of several featured stories leads; times in the newsletter's zone."""

from __future__ import annotations

from datetime import date

import pytest

from digest.articles.curation import CurationError, changes, restore, withdraw
from digest.articles.importer import import_articles
from digest.articles.repository import articles_published_on
from digest.edition import freeze, load_edition
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
