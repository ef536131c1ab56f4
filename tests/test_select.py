"""The selection rules of docs/architecture.md, one by one, on hand-made editions."""

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

from digest.articles import Article
from digest.select import Edition, select_digest

DAY = date(2026, 11, 25)
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)


def art(id, sections, priority=100, minutes=0, featured=False):
    return Article(id=id, title=id, url=f"https://x.example/{id}", published=T0 + timedelta(minutes=minutes),
                   sections=tuple(sections), priority=priority, featured=featured)


def layout(digest):
    lead = [digest.featured.id] if digest.featured else []
    return lead, [(b.name, [a.id for a in b.stories]) for b in digest.sections]


def test_canonical_section_order_priority_then_time(settings):
    ed = Edition(DAY, (art("t2", ["tech"], 5, 10), art("w1", ["world"]), art("t1", ["tech"], 5, 0),
                       art("t0", ["tech"], 1, 30)))
    assert layout(select_digest(ed, ["tech", "world"], settings)) == \
        ([], [("world", ["w1"]), ("tech", ["t0", "t1", "t2"])])


def test_per_section_limit(settings):
    ed = Edition(DAY, tuple(art(f"s{i}", ["sports"], i) for i in range(6)))
    assert layout(select_digest(ed, ["sports"], settings))[1] == [("sports", ["s0", "s1", "s2"])]
    five = layout(select_digest(ed, ["sports"], replace(settings, per_section=5)))
    assert five[1][0][1] == ["s0", "s1", "s2", "s3", "s4"]


def test_featured_opens_every_digest_and_is_not_repeated(settings):
    ed = Edition(DAY, (art("lead", ["world"], 1, featured=True), art("w", ["world"]), art("g", ["gaming"])))
    assert layout(select_digest(ed, ["gaming"], settings)) == (["lead"], [("gaming", ["g"])])
    assert layout(select_digest(ed, ["world"], settings)) == (["lead"], [("world", ["w"])])


def test_only_the_lowest_priority_featured_leads(settings):
    ed = Edition(DAY, (art("f5", ["tech"], 5, featured=True), art("f2", ["world"], 2, featured=True)))
    assert layout(select_digest(ed, ["tech"], settings)) == (["f2"], [("tech", ["f5"])])


def test_multi_section_story_appears_once_under_first_followed_section(settings):
    ed = Edition(DAY, (art("chip", ["science", "tech"]), art("t", ["tech"], 1), art("s", ["science"], 1)))
    # tech comes before science in the canonical order
    assert layout(select_digest(ed, ["science", "tech"], settings))[1] == [("tech", ["t", "chip"]), ("science", ["s"])]
    assert layout(select_digest(ed, ["science"], settings))[1] == [("science", ["s", "chip"])]


def test_multi_section_story_counts_toward_its_home_section_only(settings):
    s = replace(settings, per_section=1)
    ed = Edition(DAY, (art("both", ["tech", "science"], 1), art("sci", ["science"], 2)))
    assert layout(select_digest(ed, ["tech", "science"], s))[1] == [("tech", ["both"]), ("science", ["sci"])]


def test_empty_sections_left_out_and_empty_digest(settings):
    ed = Edition(DAY, (art("w", ["world"]),))
    assert layout(select_digest(ed, ["world", "food"], settings))[1] == [("world", ["w"])]
    d = select_digest(ed, ["food"], settings)
    assert d.is_empty and d.sections == ()


def test_featured_alone_is_still_a_digest(settings):
    ed = Edition(DAY, (art("lead", ["world"], featured=True),))
    d = select_digest(ed, ["food"], settings)
    assert not d.is_empty and d.stories[0].id == "lead"


def test_no_sections_means_default_sections(settings):
    ed = Edition(DAY, (art("w", ["world"]), art("f", ["food"])))
    assert layout(select_digest(ed, [], settings))[1] == [("world", ["w"]), ("food", ["f"])]
    only_food = replace(settings, default_sections=("food",))
    assert layout(select_digest(ed, (), only_food))[1] == [("food", ["f"])]


def test_equal_selections_share_a_key(settings):
    ed = Edition(DAY, (art("w", ["world"]),))
    assert select_digest(ed, ["world"], settings).key == select_digest(ed, ("world",), settings).key
    assert select_digest(ed, ["world"], settings).key != select_digest(ed, ["world", "food"], settings).key
