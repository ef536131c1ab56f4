"""A deliberately heavy edition: every section full, long titles and teasers, every story
with an image (the lead's full width, the others' thumbnails).  Used by the size benchmark and by the size test."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from digest.articles import Article
from digest.config import SECTIONS
from digest.select import Edition

DAY = date(2026, 11, 25)
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)
LONG = ("An unusually long machine-written summary sentence that keeps going to fill the teaser "
        "right up to its limit, with detail after detail about what happened and who said what. ") * 3


def busy_edition(per_section: int = 5) -> Edition:
    items = [Article(id="lead", title="A very long featured headline " * 4, url="https://news.example.com/lead",
                     published=T0, sections=("world",), featured=True, priority=1, question="What now? " * 8,
                     body=LONG + "\n\n## Why it matters\n\n" + LONG, image="https://news.example.com/i.jpg",
                     image_alt="A picture")]
    for s in SECTIONS:
        for i in range(per_section):
            items.append(Article(id=f"{s}-{i}", title=f"{s} headline number {i} " * 5,
                                 url=f"https://news.example.com/{s}/{'story-slug-' * 6}{i}",
                                 published=T0 + timedelta(minutes=i), sections=(s,), question="Why so long? " * 6,
                                 body=LONG, image=f"https://news.example.com/img/{s}/{'photo-' * 4}{i}.jpg",
                                 image_alt=f"A photograph for {s} story {i}, described at some length"))
    return Edition(DAY, tuple(items))
