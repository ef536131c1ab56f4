"""Stories from feeds: JSON Feed, RSS and Atom, from files (found by content) and from
URLs served by a real HTTP server on 127.0.0.1, imported by the installed `digest`."""

from __future__ import annotations

import json
import re
import shutil
import socket
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from digest.articles.feeds import html_to_text, parse_feed
from digest.articles.importer import import_articles
from digest.articles.repository import all_articles
from digest.config import ConfigError, load_settings
from tests import feed_server
from tests.conftest import REPO, write_article

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "feeds"
DAY = "2026-11-25"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def items(settings, name: str, **kwargs):
    return parse_feed(fixture(name), name, settings, **kwargs)


def by_id(found) -> dict:
    return {i.article.id: i.article for i in found if i.article}


@pytest.fixture
def server():
    state, httpd = feed_server.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def write_config(folder: Path, text: str) -> None:
    (folder / "digest.toml").write_text(text, encoding="utf-8")


def stories(run_digest) -> dict:
    result = run_digest("articles", "list", "--all", "--json")
    assert result.returncode == 0, result.stderr
    return {a["id"]: a for a in json.loads(result.stdout)}


def assert_no_traceback(result) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr


# -- the three formats, one Article ------------------------------------------------------

def test_json_feed_items_are_articles(settings):
    found = by_id(items(replace(settings, feeds_sections=(("technology", "tech"),)), "news.json"))
    iran = found["iran-leverage-miscalculation"]
    assert iran.title == "Iran’s leverage miscalculation" and iran.sections == ("world",)
    assert iran.url == "https://news.example.com/world/iran-leverage-miscalculation"
    assert iran.published == datetime(2026, 11, 25, 6, 10, tzinfo=timezone.utc)
    assert iran.featured and iran.priority == 1 and iran.question.startswith("What leverage")
    assert iran.teaser.startswith("A U.S. official said the talks fell apart")
    assert iran.why_it_matters == "Leverage assumptions are decisive in high-stakes diplomacy."
    assert iran.image == "https://news.example.com/img/iran.jpg" and iran.source == "news.json"
    chips = found["chip-export-rules"]
    assert chips.sections == ("tech", "business") and not chips.featured and chips.priority == 100
    assert chips.published == datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)  # +01:00
    assert chips.why_it_matters == "Supply chains will shift."  # a plain-text heading line
    assert by_id(items(settings, "news.json"))["chip-export-rules"].sections == ("business",)  # no alias


def test_rss_items_are_articles(settings):
    found = items(settings, "news.rss")
    harbour = by_id(found)["news-example-4411"]  # the guid, not the link
    assert harbour.title == "Harbour shipping accord & what it changes"
    assert harbour.featured and harbour.sections == ("world",)  # the category "Featured"
    assert harbour.teaser == "Coastal states signed a shared shipping-lane accord."
    assert harbour.why_it_matters == "Freight costs may fall."  # "<strong>Why it matters:</strong> …"
    assert harbour.image == "https://news.example.com/img/harbour.jpg"
    # No guid: the URL is the id.  "Athletics" is no section, and no default was given.
    assert found[1].article is None and "no category maps to a section (categories: 'Athletics')" in found[1].error
    aliased = replace(settings, feeds_sections=(("athletics", "sports"),))
    marathon = parse_feed(fixture("news.rss"), "news.rss", aliased)[1].article
    assert marathon and marathon.id == marathon.url == "https://news.example.com/sports/marathon-record"
    assert marathon.sections == ("sports",) and marathon.teaser == "A new world record in the marathon."


def test_atom_entries_are_articles(settings):
    (entry,) = items(settings, "news.atom")
    a = entry.article
    assert a.id == "tag:news.example.com,2026:vaccine-trial" and a.title == "Vaccine trial results"
    assert a.sections == ("science", "health") and a.summary == "Early results are promising."
    assert a.published == datetime(2026, 11, 25, 9, tzinfo=timezone.utc)  # published, not updated
    assert a.why_it_matters == "A winter wave is expected."


def test_sections_map_case_insensitively_through_aliases_then_the_default(settings):
    tech = replace(settings, feeds_sections=(("technology", "tech"),))
    doc = json.dumps({"version": "https://jsonfeed.org/version/1.1", "items": [
        {"id": "a", "url": "https://x.example/a", "title": "A", "date_published": "2026-11-25T06:00:00Z",
         "tags": ["TECHNOLOGY", "SCIENCE"]},
        {"id": "b", "url": "https://x.example/b", "title": "B", "date_published": "2026-11-25T06:00:00Z"},
    ]}).encode()
    a, b = parse_feed(doc, "f.json", tech)
    assert a.article.sections == ("tech", "science") and b.article is None and "categories: none" in b.error
    a, b = parse_feed(doc, "f.json", tech, default_section="gaming")
    assert a.article.sections == ("tech", "science") and b.article.sections == ("gaming",)


def test_hostile_content_is_text_or_rejected(settings):
    found = items(settings, "hostile.json")
    good = by_id(found)
    script = good["script-summary"]
    assert script.title == "Scripts in the summary"  # NUL and BEL removed, with a warning
    assert "U+0000" in found[0].warnings[0] and "U+0007" in found[0].warnings[0]
    assert script.summary == "Safe teaser & more"  # no script, no onerror, entities decoded
    assert script.body == "Body text link"  # no script, style, iframe, onclick or javascript: href
    rejected = {i.label: i.error for i in found if i.article is None}
    assert rejected["item 2 'js-link'"] == ("'url' must be an absolute http(s) URL, "
                                            "not 'javascript:alert(document.domain)'")
    assert "absolute http(s) URL" in rejected["item 3 'data-link'"]
    assert "not text (U+0000)" in rejected["item 4 'nulid'"]
    assert "longer than 500 characters" in rejected["item 5 'huge-title'"]
    assert "no publication date" in rejected["item 8 'no-date'"]
    assert "'_news_digest.priority' must be a whole number" in rejected["item 9 'bad-priority'"]
    assert "no link" in rejected["item 10 'not an object'"]
    assert len(good["huge-summary"].summary) == 2000
    assert good["bad-image"].image == "" and "image dropped" in found[6].warnings[0]
    (rss_good, rss_bad) = items(settings, "hostile.rss")
    assert rss_good.article.title == "Title" and rss_good.article.body == "Text with a link."
    assert "javascript:alert(1)" in rss_bad.error


def test_html_to_text_keeps_text_and_drops_markup():
    assert html_to_text("<p>a &lt; b &amp;&amp; c</p>") == "a < b && c"
    assert html_to_text("x < y > z") == "x < y > z"
    assert html_to_text("<script>alert(1)</script><b>bold</b> <!-- hidden --> text") == "bold text"


def test_a_feed_is_found_by_content_not_by_name(tmp_path, engine, settings):
    shutil.copy(FIXTURES / "news.atom", tmp_path / "stories.md")  # Atom, whatever the name says
    shutil.copy(FIXTURES / "news.json", tmp_path / "feed.txt")
    report = import_articles(engine, [tmp_path / "stories.md", tmp_path / "feed.txt"], settings)
    assert (report.imported, report.rejected) == (3, [])
    assert report.line() == "imported 3, updated 0, rejected 0, unchanged 0"


def test_broken_feed_files_are_rejected_with_the_reason(tmp_path, engine, settings):
    shutil.copy(FIXTURES / "broken.json", tmp_path / "broken.json")
    shutil.copy(FIXTURES / "broken.xml", tmp_path / "broken.xml")
    (tmp_path / "other.json").write_text('{"version": 2, "items": []}')
    (tmp_path / "huge.json").write_text('{"version": "https://jsonfeed.org/version/1.1", "x": "' + "a" * 6000 + '"}')
    small = replace(settings, feeds_max_bytes=5000)
    report = import_articles(engine, [tmp_path / n for n in ("broken.json", "broken.xml", "other.json", "huge.json")],
                             small)
    why = dict(report.rejected)
    assert why[str(tmp_path / "broken.json")].startswith("not valid JSON")
    assert why[str(tmp_path / "broken.xml")].startswith("not an RSS or Atom feed")
    assert why[str(tmp_path / "other.json")].startswith("JSON, but not a JSON Feed")
    assert "over the 5,000-byte cap" in why[str(tmp_path / "huge.json")]


def test_reimporting_a_feed_counts_unchanged_items_and_updates_changed_ones(tmp_path, engine, settings):
    path = tmp_path / "news.json"
    shutil.copy(FIXTURES / "news.json", path)
    assert import_articles(engine, [path], settings).line() == "imported 2, updated 0, rejected 0, unchanged 0"
    assert import_articles(engine, [path], settings).line() == "imported 0, updated 0, rejected 0, unchanged 2"
    path.write_text(path.read_text().replace("New chip export rules", "Newer chip export rules"))
    assert import_articles(engine, [path], settings).line() == "imported 0, updated 1, rejected 0, unchanged 1"
    assert {a.title for a in all_articles(engine)} >= {"Newer chip export rules"}


def test_the_same_story_in_two_feeds_is_one_story(tmp_path, engine, settings):
    """By id, then by URL: a Markdown story and a feed item at its URL are one story."""
    write_article(tmp_path, "harbour", url="https://news.example.com/world/harbour-shipping-accord")
    assert import_articles(engine, [tmp_path / "harbour.md"], settings).imported == 1
    report = import_articles(engine, [FIXTURES / "news.rss", FIXTURES / "news.rss"], settings)
    assert (report.imported, report.updated) == (0, 1)  # the guid is new, the URL is not
    ids = [a.id for a in all_articles(engine)]
    assert ids == ["harbour"] and all_articles(engine)[0].title == "Harbour shipping accord & what it changes"
    copy = json.dumps({"version": "https://jsonfeed.org/version/1.1", "items": [
        {"id": "other-id", "url": "https://news.example.com/world/harbour-shipping-accord", "title": "Copy",
         "date_published": "2026-11-25T05:10:00Z", "tags": ["world"]}]})
    (tmp_path / "copy.json").write_text(copy)
    report = import_articles(engine, [FIXTURES / "news.rss", tmp_path / "copy.json"], settings)
    assert (report.imported, report.updated, report.unchanged) == (0, 0, 1 + 1)  # harbour, then its copy
    assert [a.id for a in all_articles(engine)] == ["harbour"]


def test_markdown_import_line_is_unchanged_and_section_gives_a_default(tmp_path, engine, settings):
    path = write_article(tmp_path, "no-section", section="")
    report = import_articles(engine, [path], settings)
    assert "missing 'section'" in report.rejected[0][1] and report.line() == "imported 0, updated 0, rejected 1"
    report = import_articles(engine, [path], settings, default_section="Science")
    assert report.line() == "imported 1, updated 0, rejected 0"
    assert all_articles(engine)[0].sections == ("science",)


def test_nothing_to_import_and_a_bad_section_are_usage_errors(engine, settings):
    with pytest.raises(ConfigError, match="nothing to import"):
        import_articles(engine, [], settings)
    with pytest.raises(ConfigError, match="--section: unknown section 'weather'"):
        import_articles(engine, [FIXTURES / "news.json"], settings, default_section="weather")


# -- settings ---------------------------------------------------------------------------

def test_feeds_settings(tmp_path):
    path = tmp_path / "digest.toml"
    path.write_text('[feeds]\nurls = ["https://news.example.com/feed.json"]\ntimeout = 5\nmax_bytes = 100000\n'
                    '[feeds.sections]\n"Climate  Change" = "Science"\n')
    s = load_settings(path, env={})
    assert s.feeds_urls == ("https://news.example.com/feed.json",) and s.feeds_timeout == 5.0
    assert s.feeds_max_bytes == 100000 and s.feeds_sections == (("climate change", "science"),)


@pytest.mark.parametrize("toml, message", [
    ('[feeds]\nurls = "https://x.example/f"', "[feeds] urls: must be a list"),
    ('[feeds]\nurls = ["ftp://x.example/f"]', "is not an absolute http(s) URL"),
    ('[feeds]\ntimeout = true', "[feeds] timeout: must be a number of seconds"),
    ('[feeds]\nmax_bytes = 10', "[feeds] max_bytes: must be a whole number"),
    ('[feeds]\nurl = []', "unknown setting [feeds] 'url'"),
    ('[feeds.sections]\nTechnology = "technology"', "is not one of the site's sections"),
    ('feeds = 3', "[feeds] must be a table"),
])
def test_bad_feeds_settings_name_the_key(tmp_path, toml, message):
    path = tmp_path / "digest.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(path, env={})


def test_every_toml_block_of_the_readme_loads(tmp_path):
    blocks = re.findall(r"```toml\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    assert any("[feeds]" in b for b in blocks)
    for n, block in enumerate(blocks):
        path = tmp_path / f"block{n}.toml"
        path.write_text(block, encoding="utf-8")
        load_settings(path, env={})


# -- URLs, through the real CLI and a real server ----------------------------------------

FEEDS_TOML = """
[feeds]
urls = ["{json}", "{rss}"]
timeout = 2

[feeds.sections]
Athletics = "sports"
Technology = "tech"
"""


def serve_news(server) -> None:
    server.routes["/feed.json"] = feed_server.Route(fixture("news.json"), content_type="application/feed+json",
                                                    etag='"v1"')
    server.routes["/rss.xml"] = feed_server.Route(fixture("news.rss"), content_type="application/rss+xml",
                                                  last_modified="Wed, 25 Nov 2026 08:00:00 GMT")


def test_cron_imports_the_configured_feeds_and_an_unchanged_feed_costs_one_304(server, run_digest, tmp_path):
    serve_news(server)
    write_config(tmp_path, FEEDS_TOML.format(json=server.url("/feed.json"), rss=server.url("/rss.xml")))
    first = run_digest("articles", "import")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "imported 4, updated 0, rejected 0, unchanged 0\n"
    assert server.conditional == []
    found = stories(run_digest)
    assert set(found) == {"iran-leverage-miscalculation", "chip-export-rules", "news-example-4411",
                          "https://news.example.com/sports/marathon-record"}
    assert found["chip-export-rules"]["source"] == server.url("/feed.json")

    again = run_digest("articles", "import")  # an hour later: nothing changed
    assert again.returncode == 0, again.stderr
    assert again.stdout == "imported 0, updated 0, rejected 0, unchanged 0\n"
    assert f"{server.url('/feed.json')}: not modified" in again.stderr
    assert f"{server.url('/rss.xml')}: not modified" in again.stderr
    json_asks, rss_asks = server.seen("/feed.json"), server.seen("/rss.xml")
    assert [(r.if_none_match, r.status) for r in json_asks] == [(None, 200), ('"v1"', 304)]
    assert [(r.if_modified_since, r.status) for r in rss_asks] == [(None, 200), ("Wed, 25 Nov 2026 08:00:00 GMT", 304)]
    assert len(server.conditional) == 2

    # The JSON Feed changes one story: that one is updated, the other counted unchanged.
    route = server.routes["/feed.json"]
    route.body, route.etag = route.body.replace(b"New chip export rules", b"Newer chip export rules"), '"v2"'
    third = run_digest("articles", "import")
    assert third.returncode == 0, third.stderr
    assert third.stdout == "imported 0, updated 1, rejected 0, unchanged 1\n"
    assert stories(run_digest)["chip-export-rules"]["title"] == "Newer chip export rules"
    assert server.seen("/feed.json")[-1].if_none_match == '"v1"' and server.seen("/feed.json")[-1].status == 200
    fourth = run_digest("articles", "import", server.url("/feed.json"))
    assert fourth.stdout == "imported 0, updated 0, rejected 0, unchanged 0\n" and "not modified" in fourth.stderr
    assert server.seen("/feed.json")[-1].if_none_match == '"v2"'


def test_redirects_gzip_and_a_feed_in_two_places(server, run_digest, tmp_path):
    serve_news(server)
    server.routes["/atom"] = feed_server.Route(fixture("news.atom"), content_type="application/atom+xml", gzip=True)
    server.routes["/old-feed"] = feed_server.Route(status=301, location="/hop")
    server.routes["/hop"] = feed_server.Route(status=302, location=server.url("/feed.json"))
    result = run_digest("articles", "import", server.url("/old-feed"), server.url("/atom"), server.url("/feed.json"))
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    # feed.json twice (through its redirects, then directly): its stories are one story each.
    assert result.stdout == "imported 3, updated 0, rejected 0, unchanged 2\n"
    assert "tag:news.example.com,2026:vaccine-trial" in stories(run_digest)


def test_each_failing_feed_is_one_clear_line_and_the_good_ones_are_imported(server, run_digest, tmp_path):
    serve_news(server)
    write_config(tmp_path, "[feeds]\ntimeout = 1\nmax_bytes = 20000\n")
    big = b"<rss>" + b"x" * 50_000
    server.routes.update({
        "/slow": feed_server.Route(fixture("news.json"), delay=3),
        "/big": feed_server.Route(big),
        "/big-unsized": feed_server.Route(big, length=False),
        "/bomb": feed_server.Route(b"<rss>" + b" " * 5_000_000, gzip=True),
        "/error": feed_server.Route(b"oops", status=500),
        "/page": feed_server.Route(b"<!doctype html><html><body>Hello</body></html>", content_type="text/html"),
        "/broken.json": feed_server.Route(fixture("broken.json"), content_type="application/json"),
        "/loop": feed_server.Route(status=302, location="/loop"),
        "/to-ftp": feed_server.Route(status=302, location="ftp://127.0.0.1/feed.xml"),
    })
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}/feed.xml"
    urls = {
        "/slow": "no answer within 1 s", "/big": "too big: 50,005 bytes, over the 20,000-byte cap",
        "/big-unsized": "too big: over the 20,000-byte cap", "/bomb": "too big: over the 20,000-byte cap",
        "/missing": "HTTP 404 Not Found", "/error": "HTTP 500 Internal Server Error",
        "/page": "not an RSS or Atom feed", "/broken.json": "not valid JSON",
        "/loop": "more than 5 redirects", "/to-ftp": "redirected to a URL that is not http(s)",
    }
    args = [server.url(p) for p in urls] + [refused, "http://feeds.invalid/feed.xml", "ftp://127.0.0.1/feed.xml",
                                            server.url("/feed.json")]
    result = run_digest("articles", "import", *args, timeout=60)
    assert_no_traceback(result)
    assert result.returncode == 1
    assert result.stdout == f"imported 2, updated 0, rejected {len(urls) + 3}, unchanged 0\n"
    lines = result.stderr.splitlines()
    for path, why in urls.items():
        assert any(line.startswith(f"rejected {server.url(path)}: {why}") for line in lines), (path, lines)
    assert f"rejected {refused}: connection refused by 127.0.0.1" in result.stderr
    assert "rejected http://feeds.invalid/feed.xml: cannot find the host 'feeds.invalid'" in result.stderr
    assert "rejected ftp://127.0.0.1/feed.xml: only http(s) URLs can be imported" in result.stderr
    assert len(lines) == len(urls) + 3


def test_a_rejected_item_names_the_feed_and_the_item(server, run_digest):
    server.routes["/hostile.json"] = feed_server.Route(fixture("hostile.json"), content_type="application/json")
    result = run_digest("articles", "import", server.url("/hostile.json"))
    assert_no_traceback(result)
    assert result.returncode == 1
    assert (f"rejected {server.url('/hostile.json')}, item 2 'js-link': 'url' must be an absolute http(s) URL"
            in result.stderr)
    assert f"warning {server.url('/hostile.json')}, item 1 'script-summary': 'title': removed" in result.stderr
    assert result.stdout == "imported 3, updated 0, rejected 7, unchanged 0\n"


def test_no_argument_and_no_feeds_is_a_usage_error(run_digest):
    result = run_digest("articles", "import")
    assert result.returncode == 2
    assert result.stderr.startswith("error: nothing to import") and result.stderr.count("\n") == 1
    result = run_digest("articles", "import", "--section", "weather", str(FIXTURES / "news.json"))
    assert result.returncode == 2 and "unknown section 'weather'" in result.stderr


def test_a_feed_with_a_rejected_item_is_read_in_full_next_time(server, run_digest, tmp_path):
    """Its validators are not kept: once digest.toml maps the missing category, the next
    import reads the item instead of being told "not modified"."""
    server.routes["/rss.xml"] = feed_server.Route(fixture("news.rss"), etag='"r1"')
    first = run_digest("articles", "import", server.url("/rss.xml"))
    assert first.returncode == 1 and "(categories: 'Athletics')" in first.stderr
    write_config(tmp_path, '[feeds.sections]\nAthletics = "sports"\n')
    second = run_digest("articles", "import", server.url("/rss.xml"))
    assert second.returncode == 0, second.stderr
    assert second.stdout == "imported 1, updated 0, rejected 0, unchanged 1\n"
    third = run_digest("articles", "import", server.url("/rss.xml"))
    assert third.returncode == 0 and "not modified" in third.stderr
    assert [r.if_none_match for r in server.seen("/rss.xml")] == [None, None, '"r1"']
