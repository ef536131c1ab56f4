import email
import re
from email import policy

from digest.articles import Article
from digest.config import SECTIONS
from digest.message import build_message, list_unsubscribe_headers
from digest.render import GMAIL_CLIP_BYTES, TOKENS, Personal, Renderer, personalize
from digest.select import Edition, select_digest

from benchmarks.busy_day import DAY, T0, busy_edition


def tricky_edition() -> Edition:
    return Edition(DAY, (
        Article(id="q", title='Q&A: "Fish <and> chips" economics', url="https://x.example/a?b=1&c=2",
                published=T0, sections=("food",), question="<script>alert(1)</script>?", body="Tea & <toast>."),
    ))


PERSON = Personal("Riley <b>Bold</b> & Co", "https://n.example/p/tok.en", "https://n.example/u/tok.en")


def test_outside_text_is_escaped_in_html_and_raw_in_text(settings):
    r = Renderer(settings)
    m = personalize(r.render(select_digest(tricky_edition(), ["food"], settings)), PERSON.substitutions())
    assert "Q&amp;A: &quot;Fish &lt;and&gt; chips&quot; economics" in m.html or \
           "Q&amp;A: \"Fish &lt;and&gt; chips\" economics" in m.html
    assert "<script>" not in m.html and "&lt;script&gt;" in m.html
    assert "Riley &lt;b&gt;Bold&lt;/b&gt; &amp; Co" in m.html and "<b>Bold</b>" not in m.html
    assert 'href="https://x.example/a?b=1&amp;c=2"' in m.html
    assert 'Q&A: "Fish <and> chips" economics' in m.text and "Riley <b>Bold</b> & Co" in m.text
    assert "__ND_" not in m.html + m.text


def test_tokens_survive_mjml_and_premailer(settings):
    rendered = Renderer(settings).render(select_digest(tricky_edition(), ["food"], settings))
    for key in ("greeting_html", "preferences_url_html", "unsubscribe_url_html"):
        assert TOKENS[key] in rendered.html
    for key in ("greeting_text", "preferences_url_text", "unsubscribe_url_text"):
        assert TOKENS[key] in rendered.text
    m = personalize(rendered, PERSON.substitutions())
    assert 'href="https://n.example/u/tok.en"' in m.html and "https://n.example/u/tok.en" in m.text


def test_rendered_once_per_distinct_digest(settings):
    r = Renderer(settings)
    ed = busy_edition(2)
    for _ in range(50):
        r.render(select_digest(ed, ["tech"], settings))
        r.render(select_digest(ed, ["tech", "world"], settings))
    assert r.renders == 2


def test_html_shape(settings):
    html = Renderer(settings).render(select_digest(busy_edition(1), [], settings)).html
    assert html.startswith("<!doctype html>")
    assert re.search(r'<html[^>]* lang="en"', html)
    assert "fonts.googleapis" not in html and "@import" not in html
    assert "@media only screen and (max-width: 480px)" in html and "!important" in html  # responsive rules kept
    assert 'class="' not in html.split("<body", 1)[1] or "mj-" in html  # our classes were inlined away
    body_tag = re.search(r"<body[^>]*>", html).group(0)
    assert "margin:0" not in body_tag.replace(" ", "")  # MJML's reset was not inlined onto elements
    assert 'data-premailer' not in html
    assert "display:none" in html  # preheader


def test_subject_and_preheader(settings):
    r = Renderer(settings).render(select_digest(busy_edition(1), ["tech"], settings))
    assert r.subject.startswith(settings.name) and "Wed 25 Nov" in r.subject and "featured headline" in r.subject
    assert len(r.subject) < 160 and r.preheader.startswith("What now?")
    assert r.preheader in r.html


def test_busiest_digest_stays_under_gmail_clipping(settings):
    r = Renderer(settings)
    m = personalize(r.render(select_digest(busy_edition(), [], settings)), PERSON.substitutions())
    size = len(m.html.encode("utf-8"))
    assert size < GMAIL_CLIP_BYTES, f"{size} bytes"
    for s in SECTIONS:  # all 13 sections present, each cut at per_section (3)
        assert f"{s} headline number 2" in m.html and f"{s} headline number 3" not in m.html


def test_eml_headers_parts_and_raw_list_unsubscribe(settings):
    r = Renderer(settings)
    m = personalize(r.render(select_digest(tricky_edition(), ["food"], settings)), PERSON.substitutions())
    url = "https://news.example.com/digest/unsubscribe/" + "A" * 60 + "." + "b" * 40
    raw = build_message(m, "smith@example.com", "Smith, Jo", list_unsubscribe_headers(url), settings).as_bytes()
    assert f"List-Unsubscribe: <{url}>".encode() in raw  # one line, not RFC 2047-encoded
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["To"].addresses[0].display_name == "Smith, Jo"
    assert msg["Message-ID"] and msg["Date"] and msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert "Riley <b>Bold</b>" in msg.get_body(("plain",)).get_content()


def test_a_heavier_day_drops_teasers_rather_than_be_clipped(settings):
    from dataclasses import replace
    six = replace(settings, per_section=6)  # the most the config allows
    r = Renderer(six)
    m = personalize(r.render(select_digest(busy_edition(10), [], six)), PERSON.substitutions())
    assert len(m.html.encode()) < GMAIL_CLIP_BYTES and r.oversized == []
    assert "world headline number 5" in m.html  # every story kept, as title and link
    assert m.html.count("An unusually long") <= 4  # only the lead keeps its teaser and why-it-matters


def test_text_part_clips_and_wraps_long_titles_and_questions(settings):
    huge = Article(id="huge", title="Headline " * 10_000 + "x" * 100_000, url="https://x.example/h",
                   published=T0, sections=("food",), question="Why? " * 20_000, featured=True, body="Tea.")
    plain = Article(id="plain", title="y" * 100_000, url="https://x.example/p", published=T0,
                    sections=("food",), question="z" * 50_000, body="Tea " * 30_000)
    text = Renderer(settings).render(select_digest(Edition(DAY, (huge, plain)), ["food"], settings)).text
    longest = max(text.splitlines(), key=len)
    assert len(longest) <= 80, longest[:100]
    assert len(text) < 5_000  # clipped like the HTML (200 for a title, 160 for a question), not wrapped whole
