from dataclasses import replace
from datetime import date, datetime, timezone

import pytest

from digest.articles import ArticleError
from digest.articles.importer import import_articles
from digest.articles.markdown import parse_text
from digest.articles.repository import articles_published_on
from tests.conftest import SAMPLE, write_article
from tests.stores import store_url


def parse(settings, front: str, body: str = "Body.", name: str = "story"):
    return parse_text(f"---\n{front}\n---\n{body}\n", default_id=name, settings=settings)


GOOD = "title: T\nurl: https://news.example.com/t\npublished: 2026-11-25T06:10:00Z\nsection: world"


def test_parse_full_front_matter(settings):
    a = parse(settings, "id: custom-id\nsections: [Science, tech]\ntitle: Chips & dips\n"
                        "question: Why?\nurl: https://x.example/a\npublished: 2026-11-25T08:00:00+02:00\n"
                        "priority: 2\nfeatured: true\nimage: https://x.example/i.jpg\nimage_alt: An image",
              body="First para with a [link](https://x.example).\n\nSecond.\n\n## Why it matters\n\nIt does.")
    assert a.id == "custom-id" and a.sections == ("tech", "science")  # canonical order
    assert a.published == datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)
    assert a.priority == 2 and a.featured and a.question == "Why?"
    assert a.teaser == "First para with a link." and a.why_it_matters == "It does."


def test_defaults(settings):
    a = parse(settings, GOOD, name="file-stem")
    assert a.id == "file-stem" and a.priority == 100 and not a.featured and a.question == ""


def test_summary_overrides_first_paragraph_and_teaser_is_short(settings):
    assert parse(settings, GOOD + "\nsummary: Given.").teaser == "Given."
    long = parse(settings, GOOD, body="word " * 200)
    assert len(long.teaser) <= 280 and long.teaser.endswith("…")


def test_published_without_zone_is_newsletter_time(settings):
    london = replace(settings, timezone="Europe/London")
    a = parse(london, GOOD.replace("2026-11-25T06:10:00Z", "2026-07-01T09:00:00"))
    assert a.published == datetime(2026, 7, 1, 8, 0, tzinfo=timezone.utc)  # BST is UTC+1


@pytest.mark.parametrize("front, reason", [
    ("url: https://x.example\npublished: 2026-11-25T06:00:00Z\nsection: world", "missing 'title'"),
    ("title: T\npublished: 2026-11-25T06:00:00Z\nsection: world", "missing 'url'"),
    ("title: T\nurl: https://x.example\nsection: world", "missing 'published'"),
    ("title: T\nurl: https://x.example\npublished: yesterday\nsection: world", "not an ISO 8601"),
    ("title: T\nurl: https://x.example\npublished: 2026-11-25T06:00:00Z\nsection: weather",
     "unknown section 'weather'"),
    ("title: T\nurl: https://x.example\npublished: 2026-11-25T06:00:00Z", "missing 'section'"),
    ("title: T\nurl: javascript:alert(1)\npublished: 2026-11-25T06:00:00Z\nsection: world", "absolute http(s) URL"),
    ("title: T\nurl: /relative\npublished: 2026-11-25T06:00:00Z\nsection: world", "absolute http(s) URL"),
    ("title: T\nurl: https://x.example\npublished: 2026-11-25T06:00:00Z\nsection: world\npriority: high", "priority"),
    ("title: [unclosed\nurl: x", "broken front matter"),
    ("- just\n- a list", "not a list of 'key: value'"),
])
def test_bad_front_matter(settings, front, reason):
    with pytest.raises(ArticleError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse(settings, front)


def test_no_front_matter(settings):
    with pytest.raises(ArticleError, match="no front matter"):
        parse_text("# Just markdown\n", default_id="x", settings=settings)


def test_import_keeps_good_files_and_lists_bad_ones(tmp_path, engine, settings):
    folder = tmp_path / "in"
    write_article(folder, "good-one")
    write_article(folder / "nested", "good-two", sections=["tech", "science"])
    (folder / "no-front.md").write_text("Just text\n")
    (folder / "latin1.md").write_bytes("---\ntitle: caf\xe9\n---\n".encode("latin-1"))
    write_article(folder, "bad-date", published="25/11/2026")
    (folder / "notes.txt").write_text("ignored: not markdown")
    report = import_articles(engine, [folder], settings)
    assert (report.imported, report.updated) == (2, 0)
    reasons = dict(report.rejected)
    assert "no front matter" in reasons[str(folder / "no-front.md")]
    assert "not UTF-8" in reasons[str(folder / "latin1.md")]
    assert "ISO 8601" in reasons[str(folder / "bad-date.md")]
    assert report.line() == "imported 2, updated 0, rejected 3"

    write_article(folder, "good-one", title="Changed title")
    again = import_articles(engine, [folder / "good-one.md"], settings)
    assert (again.imported, again.updated) == (0, 1)
    titles = {a.id: a.title for a in articles_published_on(engine, date(2026, 11, 25), settings.tz)}
    assert titles["good-one"] == "Changed title"


def test_duplicate_id_in_one_import_is_rejected(tmp_path, engine, settings):
    write_article(tmp_path / "a", "x")
    write_article(tmp_path / "b", "x")
    report = import_articles(engine, [tmp_path / "a", tmp_path / "b"], settings)
    assert report.imported == 1 and "also used by" in report.rejected[0][1]


def test_an_id_longer_than_the_column_is_that_files_error_and_the_rest_are_imported(cli, workdir):
    """A 201-character id (here a long file name): PostgreSQL would refuse the row and with
    it the whole import, so the file is rejected by name and the others are kept."""
    write_article(workdir / "a", "x" * 201)
    write_article(workdir / "a", "y" * 200, title="Long but fits")
    write_article(workdir / "a", "short")
    result = cli("articles", "import", workdir / "a")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "longer than 200 characters" in result.output and f"{'x' * 201}.md" in result.output
    listed = cli.json("articles", "list", "--date", "2026-11-25", "--json")
    assert sorted(a["id"] for a in listed) == ["short", "y" * 200]


def test_edition_day_follows_the_newsletter_time_zone(tmp_path, engine, settings):
    write_article(tmp_path, "late", published="2026-11-25T23:30:00Z")
    import_articles(engine, [tmp_path], settings)
    assert [a.id for a in articles_published_on(engine, date(2026, 11, 25), settings.tz)] == ["late"]
    tokyo = replace(settings, timezone="Asia/Tokyo")  # 23:30Z is 08:30 next day there
    assert articles_published_on(engine, date(2026, 11, 25), tokyo.tz) == []
    assert [a.id for a in articles_published_on(engine, date(2026, 11, 26), tokyo.tz)] == ["late"]


def test_cli_import_and_list(cli, workdir):
    write_article(workdir / "in", "ok")
    (workdir / "in" / "broken.md").write_text("---\ntitle: x\n")
    result = cli("articles", "import", workdir / "in", workdir / "missing")
    assert result.exit_code == 1
    assert "imported 1, updated 0, rejected 2" in result.stdout
    assert "broken.md" in result.stderr and "missing: no such file" in result.stderr
    listed = cli.json("articles", "list", "--date", "2026-11-25", "--json")
    assert listed[0]["id"] == "ok" and listed[0]["sections"] == ["world"]
    assert {"id", "title", "sections", "url", "published"} <= set(listed[0])
    assert cli.json("articles", "list", "--date", "2026-11-24", "--json") == []
    assert cli("articles", "list", "--date", "tomorrow").exit_code == 2


def test_sample_articles_all_import(engine, settings):
    report = import_articles(engine, [SAMPLE / "articles"], settings)
    assert report.rejected == [] and report.imported >= 20


def test_out_of_range_values_are_rejected_not_crashing(tmp_path, engine, settings):
    write_article(tmp_path, "ancient", published="0001-01-01T00:00:00+14:00")
    write_article(tmp_path, "huge", priority=-99999999999999999999999)
    write_article(tmp_path, "fine")
    report = import_articles(engine, [tmp_path], settings)
    assert report.imported == 1 and len(report.rejected) == 2
    assert "out of range" in dict(report.rejected)[str(tmp_path / "ancient.md")]


def test_sections_key_is_named_in_errors(settings):
    with pytest.raises(ArticleError, match="'sections': unknown section 'Weather'"):
        parse(settings, GOOD.replace("section: world", "sections: [world, Weather]"))


def test_links_with_parentheses_become_plain_text(settings):
    a = parse(settings, GOOD, body="See [the report](https://x.example/a_(b)) today.")
    assert a.teaser == "See the report today."


def test_yaml_alias_bomb_is_rejected_quickly_and_others_are_kept(tmp_path, engine, settings):
    lines = ["---", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]"
              for i in range(1, 9)]
    lines += ["title: Boom", "url: https://x.example/b", "section: world", "published: *a8", "priority: *a8",
              "---", "body"]
    (tmp_path / "bomb.md").write_text("\n".join(lines))
    write_article(tmp_path, "fine")
    report = import_articles(engine, [tmp_path], settings)
    assert report.imported == 1 and len(report.rejected) == 1
    assert len(report.rejected[0][1]) < 200


def test_overlapping_paths_read_a_file_once(tmp_path, engine, settings):
    path = write_article(tmp_path, "once")
    report = import_articles(engine, [tmp_path, path], settings)
    assert (report.imported, report.rejected) == (1, [])


def test_a_newsletter_offering_fewer_sections_still_imports_site_sections(tmp_path, engine, settings):
    from dataclasses import replace
    fewer = replace(settings, sections=("world", "tech"), default_sections=("world", "tech"))
    write_article(tmp_path, "biz", sections=["tech", "business"])
    assert import_articles(engine, [tmp_path], fewer).imported == 1


def test_quoted_featured_is_understood(settings):
    assert parse(settings, GOOD + '\nfeatured: "true"').featured


def test_unknown_keys_are_imported_with_a_warning(cli, workdir):
    (workdir / "in").mkdir()
    write_article(workdir / "in", "typo", featurd=True)
    result = cli("articles", "import", workdir / "in")
    assert result.exit_code == 0 and "imported 1" in result.stdout
    assert "warning" in result.stderr and "unknown key 'featurd'" in result.stderr


def test_characters_that_are_not_text_are_removed_per_field_and_the_digest_still_renders(cli, workdir):
    write_article(workdir / "a", "noisy", title="Bell\u0007 and \u001b[31mescape", question="Lone \ud800 half?",
                  summary="Non\ufffe\uffffcharacters", image_alt="nul\u0000", image="https://x.example/i.jpg",
                  featured=True, body="A bell\u0007 in the body.\n\n## Why it matters\n\nBecause\u001b.")
    r = cli("articles", "import", workdir / "a")
    assert r.exit_code == 0, r.stderr
    for field, chars in (("'title'", "U+0007, U+001B"), ("'question'", "U+D800"), ("'summary'", "U+FFFE, U+FFFF"),
                         ("'image_alt'", "U+0000"), ("the body", "U+0007, U+001B")):
        assert f"warning {workdir / 'a' / 'noisy.md'}: {field}: removed characters that are not text ({chars})" \
            in r.stderr
    [story] = cli.json("articles", "list", "--date", "2026-11-25", "--json")
    assert (story["title"], story["question"], story["summary"], story["image_alt"]) == \
        ("Bell and [31mescape", "Lone half?", "Noncharacters", "nul")
    assert cli("subscribers", "add", "jo@example.com").exit_code == 0
    r = cli("send", "--dry-run", "--date", "2026-11-25")
    assert r.exit_code == 0 and "1 emails written" in r.stdout


def test_a_lone_surrogate_or_a_raw_control_character_never_drops_the_good_files(tmp_path, engine, settings):
    folder = tmp_path / "a"
    write_article(folder, "good")
    write_article(folder, "surrogate", title="Half \udc80 a character")
    raw = write_article(folder, "raw", title="placeholder")
    raw.write_text(raw.read_text().replace('"placeholder"', "Bell \x07 raw"), encoding="utf-8")
    write_article(folder, "bad-id", id="id\u0007x")
    report = import_articles(engine, [folder], settings)
    assert report.imported == 2  # good and surrogate (cleaned)
    reasons = dict(report.rejected)
    assert "'title' (front matter line 2) has the control character U+0007" in reasons[str(folder / "raw.md")]
    assert "'id' contains characters that are not text (U+0007)" in reasons[str(folder / "bad-id.md")]
    titles = {a.id: a.title for a in articles_published_on(engine, date(2026, 11, 25), settings.tz)}
    assert titles == {"good": "Good", "surrogate": "Half a character"}


def test_a_fifo_is_not_a_regular_file(tmp_path, engine, settings):
    import os
    os.mkfifo(tmp_path / "pipe.md")
    report = import_articles(engine, [tmp_path / "pipe.md"], settings)
    assert report.rejected == [(str(tmp_path / "pipe.md"), "not a regular file (a pipe or device?)")]


def test_articles_list_shows_control_characters_instead_of_sending_them_to_the_terminal(cli, workdir, settings):
    from digest.articles import Article
    from digest.articles.repository import save_articles
    from digest.importing import ImportReport
    from digest.store import open_store
    engine = open_store(store_url(workdir / "digest.db"))  # stored before imports cleaned titles
    save_articles(engine, [Article(id="old", title="Red \x1b[31malert\x07", url="https://x.example/o",
                                   published=datetime(2026, 11, 25, 7, tzinfo=timezone.utc), sections=("world",))],
                  ImportReport())
    r = cli("articles", "list", "--date", "2026-11-25")
    assert r.exit_code == 0 and "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "Red \ufffd[31malert\ufffd" in r.stdout
