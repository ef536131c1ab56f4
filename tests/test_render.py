import email
import itertools
import random
import re
from email import policy

import pytest

from benchmarks.busy_day import DAY, T0, busy_edition
from digest.articles import Article
from digest.config import SECTIONS
from digest.message import build_message, list_unsubscribe_headers
from digest.render import GMAIL_CLIP_BYTES, TOKENS, Personal, Renderer, RenderError, personalize
from digest.select import Edition, select_digest


def tricky_edition() -> Edition:
    return Edition(DAY, (
        Article(id="q", title='Q&A: "Fish <and> chips" economics', url="https://x.example/a?b=1&c=2",
                published=T0, sections=("food",), question="<script>alert(1)</script>?", body="Tea & <toast>."),
    ))


PERSON = Personal("Riley <b>Bold</b> & Co", "tok.en")


def render(settings, edition, sections, renderer=None):
    """One digest of `edition`, assembled from the edition's parts."""
    return (renderer or Renderer(settings)).edition(edition).render(select_digest(edition, sections, settings))


def test_outside_text_is_escaped_in_html_and_raw_in_text(settings):
    m = personalize(render(settings, tricky_edition(), ["food"]), PERSON.substitutions())
    assert "Q&amp;A: &quot;Fish &lt;and&gt; chips&quot; economics" in m.html or \
           "Q&amp;A: \"Fish &lt;and&gt; chips\" economics" in m.html
    assert "<script>" not in m.html and "&lt;script&gt;" in m.html
    assert "Riley &lt;b&gt;Bold&lt;/b&gt; &amp; Co" in m.html and "<b>Bold</b>" not in m.html
    assert 'href="https://x.example/a?b=1&amp;c=2"' in m.html
    assert 'Q&A: "Fish <and> chips" economics' in m.text and "Riley <b>Bold</b> & Co" in m.text
    assert "__ND_" not in m.html + m.text


def test_tokens_survive_mjml_and_premailer(settings):
    rendered = render(settings, tricky_edition(), ["food"])
    assert TOKENS["name_html"] in rendered.html and TOKENS["name_text"] in rendered.text
    assert rendered.html.count(TOKENS["token"]) == 4 and rendered.text.count(TOKENS["token"]) == 3
    m = personalize(rendered, PERSON.substitutions())
    base = settings.links_base
    assert f'href="{base}/unsubscribe/tok.en"' in m.html and f"{base}/unsubscribe/tok.en" in m.text
    assert f'href="{base}/preferences/tok.en"' in m.html and f"{base}/preferences/tok.en" in m.text
    assert "Good morning, Riley" in m.text
    assert "Good morning" in personalize(rendered, Personal("", "t").substitutions()).text


def test_the_pipeline_runs_once_per_edition_whatever_the_section_sets(settings):
    r = Renderer(settings)
    edition = r.edition(busy_edition(2))
    sets = [c for n in (1, 2, 3) for c in itertools.combinations(SECTIONS, n)][:300]
    for chosen in sets:
        edition.render(select_digest(edition.edition, chosen, settings))
    assert r.renders == 1


def mixed_edition() -> Edition:
    """Stories in several sections, no lead, uneven sections: what makes assembly hard."""
    items = []
    for i in range(30):
        secs = tuple(sorted(random.Random(i).sample(SECTIONS, 1 + i % 3), key=SECTIONS.index))
        items.append(Article(id=f"s{i}", title=f"Story {i} & <co>", url=f"https://x.example/{i}", published=T0,
                             sections=secs, priority=i % 4, question="Why?" if i % 2 else "",
                             body="Body & more." if i % 3 else ""))
    return Edition(DAY, tuple(items))


@pytest.mark.parametrize("edition", [busy_edition(3), busy_edition(10), mixed_edition()],
                         ids=["busy", "compact", "mixed"])
def test_assembled_digests_equal_a_full_render(settings, edition):
    """The fast path (parts assembled) and the full pipeline give the same document."""
    rng = random.Random(7)
    renderer = Renderer(settings)
    per_edition = renderer.edition(edition)
    sets = [tuple(rng.sample(SECTIONS, rng.randint(1, 13))) for _ in range(12)] + [(), ("gaming",), SECTIONS]
    for chosen in sets:
        digest = select_digest(edition, chosen, settings)
        if digest.is_empty:
            continue
        assembled, full = per_edition.render(digest), per_edition.full_render(digest)
        assert assembled == full, chosen
    assert renderer.renders > 1  # the full renders really ran the pipeline


def test_a_story_that_breaks_mjml_fails_only_its_digests(settings, monkeypatch):
    edition = Edition(DAY, (
        Article(id="ok", title="Fine", url="https://x.example/ok", published=T0, sections=("tech",)),
        Article(id="bad", title="BREAKS-MJML", url="https://x.example/bad", published=T0, sections=("food",)),
    ))
    renderer = Renderer(settings)
    real = renderer.mjml

    def fragile(ctx):
        out = real(ctx)
        if "BREAKS-MJML" in out:
            raise ValueError("unexpected character in the MJML source")
        return out
    monkeypatch.setattr(renderer, "mjml", fragile)
    per_edition = renderer.edition(edition)
    tech = per_edition.render(select_digest(edition, ["tech"], settings))
    assert "Fine" in tech.html
    with pytest.raises(RenderError, match="unexpected character"):
        per_edition.render(select_digest(edition, ["food", "tech"], settings))


def test_html_shape(settings):
    html = render(settings, busy_edition(1), []).html
    assert html.startswith("<!doctype html>")
    assert re.search(r'<html[^>]* lang="en"', html)
    assert "fonts.googleapis" not in html and "@import" not in html
    assert "@media only screen and (max-width: 480px)" in html and "!important" in html  # responsive rules kept
    body = html.split("<body", 1)[1]
    head = html.split("</head>", 1)[0]
    used = set(re.findall(r"\.(-?[A-Za-z_][\w-]*)", " ".join(re.findall(r"<style[^>]*>(.*?)</style>", head, re.S))))
    kept = {c for value in re.findall(r' class="([^"]*)"', body) for c in value.split()}
    assert kept and kept <= used  # only classes a kept <style> rule uses (dark scheme, responsive) stay
    assert "teaser" not in kept and "kicker" not in kept
    body_tag = re.search(r"<body[^>]*>", html).group(0)
    assert "margin:0" not in body_tag.replace(" ", "")  # MJML's reset was not inlined onto elements
    assert 'data-premailer' not in html
    assert "display:none" in html  # preheader


def test_subject_and_preheader(settings):
    r = render(settings, busy_edition(1), ["tech"])
    assert r.subject.startswith(settings.name) and "Wed 25 Nov" in r.subject and "featured headline" in r.subject
    assert len(r.subject) < 160 and r.preheader.startswith("What now?")
    assert r.preheader in r.html


def test_busiest_digest_stays_under_gmail_clipping(settings):
    m = personalize(render(settings, busy_edition(), []), PERSON.substitutions())
    size = len(m.html.encode("utf-8"))
    assert size < GMAIL_CLIP_BYTES, f"{size} bytes"
    for s in SECTIONS:  # all 13 sections present, each cut at per_section (3)
        assert f"{s} headline number 2" in m.html and f"{s} headline number 3" not in m.html


def test_eml_headers_parts_and_raw_list_unsubscribe(settings):
    m = personalize(render(settings, tricky_edition(), ["food"]), PERSON.substitutions())
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
    m = personalize(render(six, busy_edition(10), [], r), PERSON.substitutions())
    assert len(m.html.encode()) < GMAIL_CLIP_BYTES and r.oversized == []
    assert "world headline number 5" in m.html  # every story kept, as title and link
    assert m.html.count("An unusually long") <= 4  # only the lead keeps its teaser and why-it-matters


def test_text_part_clips_and_wraps_long_titles_and_questions(settings):
    huge = Article(id="huge", title="Headline " * 10_000 + "x" * 100_000, url="https://x.example/h",
                   published=T0, sections=("food",), question="Why? " * 20_000, featured=True, body="Tea.")
    plain = Article(id="plain", title="y" * 100_000, url="https://x.example/p", published=T0,
                    sections=("food",), question="z" * 50_000, body="Tea " * 30_000)
    text = render(settings, Edition(DAY, (huge, plain)), ["food"]).text
    longest = max((line for line in text.splitlines() if "://" not in line), key=len)  # links are not wrapped
    assert len(longest) <= 80, longest[:100]
    assert len(text) < 5_000  # clipped like the HTML (200 for a title, 160 for a question), not wrapped whole
