"""The digest email itself in a real browser (Debian's chromium through Playwright):
light and dark schemes at phone and desktop widths, with images blocked (nothing on
this machine serves them) except one inline thumbnail.  Screenshots go to a temp dir,
copied to /tmp/shots/ to be looked at; the colours the dark scheme promises are
asserted on the computed styles.
"""

from __future__ import annotations

import base64
import shutil
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from digest.articles import Article
from digest.articles.markdown import parse_file
from digest.render import Personal, Renderer, personalize
from digest.select import Edition, select_digest

SAMPLE = Path(__file__).resolve().parent.parent / "sample" / "articles" / "2026-11-25"
SHOTS = Path("/tmp/shots")
WIDTHS = (375, 1200)


def png(width: int, height: int) -> str:
    """A small gradient PNG as a data: URI (an image that loads with no network)."""
    rows = b"".join(b"\x00" + b"".join(bytes((x * 255 // width, 90, 160 - y)) for x in range(width))
                    for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def sample_edition(settings) -> Edition:
    articles = [parse_file(p, settings) for p in sorted(SAMPLE.glob("*.md"))]
    pictured = []
    for i, a in enumerate(articles):
        if a.featured:
            a = replace(a, image="https://news.example.com/img/lead.jpg", image_alt="Harbour cranes at dawn")
        elif i % 3 == 0:  # blocked: the alt text shows, styled
            a = replace(a, image=f"https://news.example.com/img/{a.id}.jpg", image_alt=f"Photo: {a.title[:40]}")
        elif i % 3 == 1:
            a = replace(a, image=png(12, 8), image_alt="A gradient")  # tiny: the digest stays small
        pictured.append(a)
    return Edition(articles[0].published.date(), tuple(pictured))


@pytest.fixture(scope="module")
def email_html(tmp_path_factory):
    from digest.config import Settings
    settings = Settings(postal_address="1 Example Street\nExampleton EX1 2MP")
    edition = sample_edition(settings)
    digest = select_digest(edition, [], settings)
    assert len(digest.sections) > 4  # the contents line shows
    rendered = Renderer(settings).edition(edition).render(digest)
    html = personalize(rendered, Personal("Pat", "tok").substitutions()).html
    story = next(a for b in digest.sections for a in b.stories if a.teaser and a.image)
    assert story.teaser[:40] in html and story.image in html  # not the compact form: teasers and thumbnails
    path = tmp_path_factory.mktemp("email") / "digest.html"
    path.write_text(html, encoding="utf-8")
    return path


def colour(page, selector: str, prop: str) -> str:
    return page.eval_on_selector(selector, f"e => getComputedStyle(e).{prop}")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_email_in_both_schemes_at_phone_and_desktop_widths(browser, email_html, scheme, tmp_path):
    context = browser.new_context(color_scheme=scheme, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    # Images from the network are "blocked" (a mail client's default): only data: URIs load.
    page.route("http*://**/*", lambda route: route.abort())
    page.goto(email_html.as_uri())
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        shot = tmp_path / f"email-{scheme}-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SHOTS / shot.name)
        # Nothing wider than the viewport (no sideways scrolling on a phone).
        assert page.evaluate("document.documentElement.scrollWidth") <= width

    title_link = "h3 a"
    if scheme == "dark":
        assert colour(page, "body", "backgroundColor") == "rgb(22, 21, 19)"
        assert colour(page, ".card", "backgroundColor") == "rgb(34, 33, 30)"
        assert colour(page, title_link, "color") == "rgb(143, 188, 245)"
        assert colour(page, ".greeting + p", "color") == "rgb(201, 197, 189)"  # the intro
        assert colour(page, ".greeting", "color") == "rgb(236, 235, 231)"
        assert colour(page, ".why", "backgroundColor") == "rgb(46, 44, 40)"
        assert colour(page, ".footer", "color") == "rgb(201, 197, 189)"
    else:
        assert colour(page, "body", "backgroundColor") == "rgb(238, 235, 228)"
        assert colour(page, ".card", "backgroundColor") == "rgb(255, 255, 255)"
        assert colour(page, title_link, "color") == "rgb(26, 79, 143)"
    # Titles look like links; every story has a Read link; the contents line links to sections.
    assert "underline" in colour(page, title_link, "textDecorationLine")
    assert page.locator("a", has_text="Read").count() >= page.locator("h3").count()
    targets = page.eval_on_selector_all("a[href^='#s-']", "links => links.map(a => a.getAttribute('href'))")
    assert len(targets) > 4 and all(page.locator(t).count() == 1 for t in targets)
    # Blocked images show styled alt text, not Times; the inline one loads at its size.
    assert "Helvetica" in colour(page, "img[src^='https://']", "fontFamily")
    loaded = page.locator("img[src^='data:']").first
    assert loaded.evaluate("i => i.complete && i.naturalWidth") == 12
    assert loaded.bounding_box()["width"] == 96
    # The preheader and its filler stay hidden.
    assert page.locator("body > div").first.evaluate("d => getComputedStyle(d).display") == "none"
    context.close()


def test_dark_scheme_meta_and_media_query_survive_premailer(email_html):
    html = email_html.read_text(encoding="utf-8")
    head = html.split("</head>", 1)[0]
    assert '<meta name="color-scheme" content="light dark">' in head
    assert '<meta name="supported-color-schemes" content="light dark">' in head
    assert "@media (prefers-color-scheme:dark)" in head.replace(": ", ":")
    assert "[data-ogsc]" in head


def test_one_article_is_enough_for_an_email(browser, tmp_path):
    """The smallest digest (one story, no contents line) renders without errors in either scheme."""
    from benchmarks.busy_day import T0
    from digest.config import Settings
    settings = Settings()
    edition = Edition(T0.date(), (Article(id="a", title="Only story", url="https://x.example/a", published=T0,
                                          sections=("tech",), body="Short."),))
    html = Renderer(settings).edition(edition).render(select_digest(edition, ["tech"], settings)).html
    page = browser.new_page(color_scheme="dark")
    (tmp_path / "one.html").write_text(html, encoding="utf-8")
    page.goto((tmp_path / "one.html").as_uri())
    assert page.locator("a[href^='#s-']").count() == 0
    assert colour(page, "h3 a", "color") == "rgb(143, 188, 245)"
    page.close()
