"""Issue 12, the email finished: contrast of both schemes, images, navigation, preheader
filler, List-Id / Feedback-ID / postal address, truthful intro and footer, send_lead_only.

Stores run on both engines (the `engine` fixture); rendering is pure.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date

import pytest

from benchmarks.busy_day import DAY, T0, busy_edition
from digest import sending
from digest.articles import Article
from digest.articles.importer import import_articles
from digest.config import ConfigError, load_settings, section_mask
from digest.deliver import ledger
from digest.deliver.sendgrid import request_body
from digest.deliver.transport import Outcome
from digest.deliver.workers import Builder
from digest.message import build_message, shared_headers
from digest.render import TEMPLATES_DIR, Personal, Renderer, personalize
from digest.select import DEFAULTED, Edition, digest_for_mask, resolved_mask, select_digest
from digest.subscribers import store as subscriber_store
from digest.tokens import Signer
from tests.conftest import SAMPLE_DAY, SECRET, write_article

PERSON = Personal("Pat", "tok")


def render(settings, edition, sections):
    return Renderer(settings).edition(edition).render(select_digest(edition, sections, settings))


# -- 1. contrast: every text colour against its background, in both schemes -------------------

def luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    channels = [int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def rule(css: str, selector: str, prop: str) -> str:
    """The colour `prop` of the first rule whose selector list holds `selector`."""
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        if selector in [s.strip() for s in selectors.split(",")]:
            found = re.search(rf"(?:^|;)\s*{re.escape(prop)}\s*:\s*(#[0-9a-fA-F]{{3,6}})", body)
            if found:
                return found.group(1)
    raise AssertionError(f"no {prop} for {selector}")


LIGHT = (TEMPLATES_DIR / "digest.css").read_text(encoding="utf-8")
DARK_ALL = (TEMPLATES_DIR / "digest-dark.css").read_text(encoding="utf-8")
DARK = DARK_ALL[DARK_ALL.index("@media (prefers-color-scheme: dark)"):DARK_ALL.index("[data-ogsb]")]
CARD, PAGE = "#ffffff", "#eeebe4"  # the template's mj-section / mj-body backgrounds
LIGHT_PAIRS = {  # what: (foreground, background)
    "body text": ("#1f1f1f", CARD),
    "intro": (rule(LIGHT, ".intro", "color"), CARD),
    "kicker": (rule(LIGHT, ".kicker", "color"), CARD),
    "teaser": (rule(LIGHT, ".teaser", "color"), CARD),
    "title link": (rule(LIGHT, ".title-link", "color"), CARD),
    "read link": (rule(LIGHT, ".read-link", "color"), CARD),
    "contents link": (rule(LIGHT, ".contents-link", "color"), CARD),
    "section heading": (rule(LIGHT, ".section", "color"), CARD),
    "why it matters": (rule(LIGHT, ".why", "color"), rule(LIGHT, ".why", "background-color")),
    "signoff": (rule(LIGHT, ".signoff", "color"), CARD),
    "dateline": (rule(LIGHT, ".dateline", "color"), PAGE),
    "footer": ("#555555", PAGE),
    "footer link": (rule(LIGHT, ".footer-link", "color"), PAGE),
    "alt text": (rule(LIGHT, ".thumb", "color"), rule(LIGHT, ".thumb", "background-color")),
}
DARK_CARD, DARK_PAGE = rule(DARK, ".card", "background-color"), rule(DARK, ".page", "background-color")
DARK_PAIRS = {
    "body text": (rule(DARK, ".card div", "color"), DARK_CARD),
    "paragraphs (intro, kicker, teaser)": (rule(DARK, ".card p", "color"), DARK_CARD),
    "links (titles, read, contents)": (rule(DARK, ".card a", "color"), DARK_CARD),
    "section heading, label": (rule(DARK, ".card h2", "color"), DARK_CARD),
    "why it matters": (rule(DARK, ".card .why", "color"), rule(DARK, ".card .why", "background-color")),
    "masthead": (rule(DARK, ".outer div", "color"), DARK_PAGE),
    "footer": (rule(DARK, ".footer", "color"), DARK_PAGE),
    "footer link": (rule(DARK, ".footer-link", "color"), DARK_PAGE),
    "alt text": (rule(DARK, ".card img", "color"), rule(DARK, ".card img", "background-color")),
}


@pytest.mark.parametrize("scheme,pairs", [("light", LIGHT_PAIRS), ("dark", DARK_PAIRS)])
def test_every_text_colour_meets_wcag_aa_on_its_background(scheme, pairs):
    low = {what: round(contrast(fg, bg), 2) for what, (fg, bg) in pairs.items() if contrast(fg, bg) < 4.5}
    assert not low, f"{scheme}: under 4.5:1: {low}"


def test_no_pure_black_or_white_pairs_in_the_dark_scheme():
    colours = {c.lower() for c in re.findall(r"#[0-9a-fA-F]{6}\b", DARK_ALL)}
    assert not colours & {"#000000", "#ffffff"}


def test_dark_scheme_survives_premailer(settings):
    html = render(settings, busy_edition(1), []).html
    head = html.split("</head>", 1)[0]
    assert '<meta name="color-scheme" content="light dark">' in head
    assert '<meta name="supported-color-schemes" content="light dark">' in head
    assert "@media (prefers-color-scheme: dark)" in head and "!important" in head and "[data-ogsc]" in head
    body = html.split("<body", 1)[1]
    for hook in ('class="card"', 'class="outer"', 'class="page"', 'class="story'):
        assert hook in body  # the classes the dark rules select by stay on the elements


# -- 2. images ----------------------------------------------------------------------------------

def test_lead_image_full_width_and_thumbnails_with_sizes_and_styled_alt_text(settings):
    html = render(settings, busy_edition(2), ["tech"]).html
    lead = re.search(r'<img src="https://news.example.com/i.jpg"[^>]*>', html).group(0)
    assert 'width="552"' in lead and 'height="311"' in lead and 'alt="A picture"' in lead
    assert "width:100%" in lead and "height:auto" in lead and "font:14px/1.4 Helvetica" in lead
    thumbs = re.findall(r'<img src="https://news.example.com/img/tech/[^>]*>', html)
    assert len(thumbs) == 2
    for t in thumbs:
        assert 'width="96"' in t and 'height="64"' in t and 'alt="A photograph for tech story' in t
        assert "font:11px/1.3 Helvetica" in t and "color:#4a4a4a" in t


def test_a_story_without_an_image_has_no_thumbnail_and_compact_digests_drop_them(settings):
    plain = Edition(DAY, (Article(id="p", title="Plain", url="https://x.example/p", published=T0, sections=("food",)),))
    assert "<img" not in render(settings, plain, ["food"]).html
    six = replace(settings, per_section=6)
    heavy = personalize(render(six, busy_edition(10), []), PERSON.substitutions()).html
    assert "/img/world/" not in heavy and "world headline number 5" in heavy  # compact: titles and links stay


# -- 3. navigation ----------------------------------------------------------------------------

def test_titles_are_underlined_links_and_every_story_has_a_read_link(settings):
    edition = busy_edition(2)
    digest = select_digest(edition, ["tech", "food"], settings)
    html = Renderer(settings).edition(edition).render(digest).html
    titles = re.findall(r"<h3[^>]*><a [^>]*>", html)
    assert len(titles) == 4 and all("color:#1a4f8f" in t and "text-decoration:underline" in t for t in titles)
    for a in digest.stories[1:]:
        assert re.search(rf'<a href="{re.escape(a.url)}"[^>]*>Read\u00a0\u2192</a>', html), a.id


def test_a_contents_line_only_above_four_sections_with_anchors_to_them(settings):
    edition = busy_edition(1)
    four = render(settings, edition, ["world", "tech", "food", "travel"]).html
    assert "In this issue" not in four and 'href="#s-' not in four
    five = render(settings, edition, ["world", "tech", "food", "travel", "gaming"]).html
    links = re.findall(r'<a href="#s-(\w+)"[^>]*>(\w+)</a>', five)
    assert [n for n, _ in links] == ["world", "tech", "food", "travel", "gaming"]
    assert [t for _, t in links] == ["World", "Tech", "Food", "Travel", "Gaming"]
    assert all(f'id="s-{n}"' in five for n, _ in links)
    line = re.search(r"In this issue:(.*?)</div>", five, re.S).group(1)
    assert line.count("\u00b7") == 4  # separators between, not before the first


# -- 4. preheader ---------------------------------------------------------------------------

def test_preheader_is_followed_by_hidden_filler(settings):
    r = render(settings, busy_edition(1), ["tech"])
    hidden = re.search(r'<div style="display:none;[^"]*">(.*?)</div>', r.html, re.S).group(1)
    assert hidden.startswith(r.preheader)
    filler = hidden[len(r.preheader):]
    assert filler.count("\u034f\u200c") >= 50 and not filler.strip("\u034f\u200c\u00a0 ")
    assert "\u034f" not in r.text


# -- 6. headers and footer --------------------------------------------------------------------

def test_list_id_from_config_or_derived_and_feedback_id_optional():
    assert shared_headers(load_settings(env={}))["List-Id"] == "The Daily Digest <the-daily-digest.news.example.com>"
    assert "Feedback-ID" not in shared_headers(load_settings(env={}))
    odd = replace(load_settings(env={}), name="News, Daily", site_url="https://daily.example.org")
    assert odd.list_id_header == '"News, Daily" <news-daily.daily.example.org>'


def write_toml(tmp_path, text: str):
    path = tmp_path / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_new_settings_load_and_are_validated(tmp_path):
    s = load_settings(write_toml(tmp_path, 'list_id = "Morning Digest <digest.news.example.com>"\n'
                                           'feedback_id = "daily:digest:news"\npostal_address = "1 Example St"\n'
                                           "send_lead_only = false\n"), env={})
    assert (s.list_id_header, s.feedback_id, s.postal_address, s.send_lead_only) == (
        "Morning Digest <digest.news.example.com>", "daily:digest:news", "1 Example St", False)
    headers = shared_headers(s)
    assert headers == {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                       "List-Id": "Morning Digest <digest.news.example.com>", "Feedback-ID": "daily:digest:news"}
    for bad, words in (('list_id = "no brackets"', "list_id: 'no brackets' is not a List-Id"),
                       ('list_id = "<nodot>"', "is not a List-Id"),
                       ('feedback_id = "has space:x"', "feedback_id:"),
                       ('feedback_id = "a::b"', "feedback_id:"),
                       ('send_lead_only = "no"', "send_lead_only: must be true or false"),
                       ("postal_address = 12", "postal_address: must be a string"),
                       ('postal_address = "bell\\u0007"', "postal_address:")):
        with pytest.raises(ConfigError, match=re.escape(words)):
            load_settings(write_toml(tmp_path, bad + "\n"), env={})


def test_shared_headers_go_once_per_request_and_into_each_eml(settings):
    s = replace(settings, feedback_id="daily:digest", postal_address="1 Example Street\nExampleton")
    edition = busy_edition(1)
    rendered = Renderer(s).edition(edition).render(select_digest(edition, ["tech"], s))
    builder = Builder(Signer(SECRET), s.links_base, DAY.isoformat(), shared_headers(s))
    batch = builder.batch(rendered, [(1, "a@example.com", "A", None), (2, "b@example.com", "", None)])
    body = request_body(s, rendered, batch)
    assert body["headers"]["List-Id"] == s.list_id_header and body["headers"]["Feedback-ID"] == "daily:digest"
    assert all(set(p["headers"]) == {"List-Unsubscribe"} for p in body["personalizations"])
    m = personalize(rendered, batch.recipients[0].substitutions)
    raw = build_message(m, "a@example.com", "A", {**batch.headers, **batch.recipients[0].headers}, s).as_bytes()
    assert f"List-Id: {s.list_id_header}\r\n".encode() in raw and b"Feedback-ID: daily:digest\r\n" in raw
    assert "1 Example Street, Exampleton" in m.html and "1 Example Street\nExampleton" in m.text


# -- 7. truthful words --------------------------------------------------------------------------

def edition_with_lead() -> Edition:
    return Edition(DAY, (
        Article(id="lead", title="The lead", url="https://x.example/l", published=T0, sections=("world",),
                featured=True),
        Article(id="t", title="Tech story", url="https://x.example/t", published=T0, sections=("tech",)),
    ))


def test_lead_only_digest_says_why(settings):
    r = personalize(render(settings, edition_with_lead(), ["gaming"]), PERSON.substitutions())
    assert "No new Gaming stories today: here is the day\u2019s lead story." in r.html
    assert "No new Gaming stories today: here is the day\u2019s lead story." in r.text
    assert "because you follow Gaming." in r.html
    two = render(settings, edition_with_lead(), ["food", "gaming"])
    assert "No new Food or Gaming stories today" in two.text


def test_chosen_sections_none_offered_get_the_defaults_and_are_told(settings):
    offered = replace(settings, sections=("world", "tech", "food"), default_sections=("world", "tech"))
    digest = select_digest(edition_with_lead(), ["gaming"], offered)
    assert digest.defaulted and digest.followed == ("world", "tech")
    r = Renderer(offered).edition(edition_with_lead()).render(digest)
    assert "None of your sections is offered any more, so you get World and Tech." in r.text
    assert ("You receive The Daily Digest with its default sections (World and Tech): none of the sections "
            "you chose is offered any more.") in r.text
    assert "because you follow" not in r.text and "because you follow" not in r.html
    # Nothing chosen at all is not "defaulted": the footer names what they follow.
    assert not select_digest(edition_with_lead(), [], offered).defaulted
    # The mask carries it, so the ledger's rows group it as a digest of its own.
    mask = resolved_mask(section_mask(["gaming"]), offered)
    assert mask == section_mask(["world", "tech"]) | DEFAULTED
    assert digest_for_mask(edition_with_lead(), mask, offered) == digest


def test_the_reference_render_matches_for_the_new_kinds_of_digest(settings):
    offered = replace(settings, sections=("world", "tech", "food"), default_sections=("world", "tech"))
    per_edition = Renderer(offered).edition(edition_with_lead())
    for chosen in (["gaming"], ["food"], [], ["tech"]):
        digest = select_digest(edition_with_lead(), chosen, offered)
        assert per_edition.render(digest) == per_edition.full_render(digest), chosen


# -- send_lead_only at freeze and in the dry run, on both engines --------------------------------

PEOPLE = {"tech@x.example": ("tech",), "gaming@x.example": ("gaming",), "food@x.example": ("food", "gaming"),
          "both@x.example": ("tech", "gaming"), "sport@x.example": ("sports",)}


@pytest.fixture
def audience(engine, settings, tmp_path):
    """A day with a lead story (world) and one tech story; two people follow only sections
    with nothing new today (lead only); one chose only a section no longer offered."""
    folder = tmp_path / "day"
    write_article(folder, "lead", section="world", featured="true", priority=1)
    write_article(folder, "chip", section="tech")
    assert not import_articles(engine, [folder], settings).rejected
    for email, chosen in PEOPLE.items():
        subscriber_store.add(engine, email, "", chosen)
    return engine


def offer(settings, send_lead_only: bool):
    # sports is not offered: its subscriber gets the defaults (world and tech, with a story).
    offered = tuple(s for s in settings.sections if s != "sports")
    return replace(settings, sections=offered, default_sections=("world", "tech"), send_lead_only=send_lead_only)


class Collect:
    name = "collect"

    def __init__(self):
        self.batches = []

    def deliver(self, batch):
        self.batches.append(batch)
        return [Outcome(r, "sent", message_id="m") for r in batch.recipients]

    def emails(self):
        return sorted(r.email for b in self.batches for r in b.recipients)


@pytest.mark.parametrize("send_lead_only", [True, False])
def test_send_lead_only_decides_at_freeze_and_in_the_dry_run_alike(audience, settings, send_lead_only):
    s = offer(settings, send_lead_only)
    day = date.fromisoformat(SAMPLE_DAY)
    rehearsal = Collect()
    dry = sending.rehearse(audience, s, day, rehearsal, Signer(SECRET))
    real = Collect()
    sent = sending.send(audience, s, day, real, Signer(SECRET))
    everyone = sorted(PEOPLE)
    lead_only = ["food@x.example", "gaming@x.example"]
    expected = everyone if send_lead_only else sorted(set(everyone) - set(lead_only))
    assert rehearsal.emails() == real.emails() == expected
    for summary in (dry, sent):
        d = summary.to_dict()
        assert d["skipped_lead_only"] == (0 if send_lead_only else 2) and d["skipped_empty"] == 0, d
        json.dumps(d)
    assert sent.counts["sent"] == len(expected) and sent.exit_code == 0
    rows = {r.email: r.section_mask for r in ledger.rows(audience, SAMPLE_DAY)}
    assert rows["sport@x.example"] == section_mask(["world", "tech"]) | DEFAULTED  # the defaults, flagged
    by_email = {r.email: b for b in real.batches for r in b.recipients}
    assert "None of your sections is offered any more" in by_email["sport@x.example"].rendered.text
    if send_lead_only:
        assert "No new Gaming stories today" in by_email["gaming@x.example"].rendered.text
        assert "No new Food or Gaming stories today" in by_email["food@x.example"].rendered.text
    assert "No new" not in by_email["both@x.example"].rendered.text  # tech has a story


def test_dry_run_reports_lead_only_skips_on_the_command_line(cli, tmp_path):
    folder = tmp_path / "day"
    write_article(folder, "lead", section="world", featured="true", priority=1)
    write_article(folder, "chip", section="tech")
    (tmp_path / "digest.toml").write_text("send_lead_only = false\n", encoding="utf-8")
    cli("articles", "import", folder)
    cli("subscribers", "add", "gaming@x.example", "--sections", "gaming")
    cli("subscribers", "add", "tech@x.example", "--sections", "tech")
    summary = cli.json("send", "--dry-run", "--date", SAMPLE_DAY, "--json")
    assert summary["emails_written"] == 1 and summary["skipped_lead_only"] == 1 and summary["skipped_empty"] == 0
    shown = cli("send", "--dry-run", "--date", SAMPLE_DAY)
    assert "1 skipped (lead story only)" in shown.stdout


def test_every_toml_block_in_the_readme_loads(tmp_path):
    from tests.conftest import REPO
    blocks = re.findall(r"```toml\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    assert blocks
    for block in blocks:
        load_settings(write_toml(tmp_path, block), env={})  # raises ConfigError naming the key if not
    first = load_settings(write_toml(tmp_path, blocks[0]), env={})
    assert first.postal_address and first.list_id and first.feedback_id and first.send_lead_only is True
