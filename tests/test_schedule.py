"""digest.schedule: each reader's delivery time for an edition, across zones and DST."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from digest.config import Settings
from digest.schedule import delivery_time, edition_start, resolve, slot

UTC = timezone.utc


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("newsletter", "day", "zone", "hour", "expected"), [
    # No DST at all, and the newsletter's own zone.
    ("UTC", date(2026, 11, 25), "UTC", 7, utc(2026, 11, 25, 7)),
    ("UTC", date(2026, 11, 25), "Asia/Tokyo", 7, utc(2026, 11, 25, 22)),  # 07:00 on the 25th is before midnight UTC
    ("UTC", date(2026, 11, 25), "UTC", 0, utc(2026, 11, 25, 0)),        # at the start itself
    ("Europe/London", date(2026, 11, 25), "America/New_York", 7, utc(2026, 11, 25, 12)),
    ("Europe/London", date(2026, 7, 1), "Europe/London", 7, utc(2026, 7, 1, 6)),  # BST
    # The date line: +14, -11, and New Zealand's summer time.
    ("UTC", date(2026, 11, 25), "Pacific/Kiritimati", 7, utc(2026, 11, 25, 17)),  # their 26th
    ("UTC", date(2026, 11, 25), "Pacific/Pago_Pago", 7, utc(2026, 11, 25, 18)),   # their 25th
    ("UTC", date(2026, 11, 25), "Pacific/Auckland", 7, utc(2026, 11, 25, 18)),    # NZDT, their 26th
    ("UTC", date(2026, 6, 25), "Pacific/Auckland", 7, utc(2026, 6, 25, 19)),      # NZST
    ("Pacific/Kiritimati", date(2026, 11, 25), "Pacific/Pago_Pago", 7, utc(2026, 11, 24, 18)),
    ("Pacific/Pago_Pago", date(2026, 11, 25), "Pacific/Kiritimati", 7, utc(2026, 11, 25, 17)),  # their 26th
    # Half-hour zones.
    ("UTC", date(2026, 11, 25), "Asia/Kolkata", 7, utc(2026, 11, 25, 1, 30)),
    ("UTC", date(2026, 11, 25), "Australia/Adelaide", 7, utc(2026, 11, 25, 20, 30)),  # ACDT +10:30
    ("UTC", date(2026, 6, 25), "Australia/Adelaide", 7, utc(2026, 6, 25, 21, 30)),    # ACST +9:30
])
def test_delivery_time(newsletter, day, zone, hour, expected):
    got = delivery_time(day, Settings(timezone=newsletter), zone, hour)
    assert got == expected
    assert got.astimezone(ZoneInfo(zone)).hour == hour
    start = edition_start(day, Settings(timezone=newsletter))
    assert start <= got < start + timedelta(hours=26)


def test_spring_forward_means_the_first_instant_after_the_gap():
    # New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT at 07:00 UTC; 02:00 never happens.
    settings = Settings(timezone="America/New_York")
    got = delivery_time(date(2026, 3, 8), settings, "America/New_York", 2)
    assert got == utc(2026, 3, 8, 7)
    assert got.astimezone(ZoneInfo("America/New_York")).strftime("%H:%M") == "03:00"
    # London, 2026-03-29: 01:00 GMT jumps to 02:00 BST at 01:00 UTC.
    assert delivery_time(date(2026, 3, 29), Settings(), "Europe/London", 1) == utc(2026, 3, 29, 1)
    # The hour after the gap is an ordinary hour.
    assert delivery_time(date(2026, 3, 8), settings, "America/New_York", 3) == utc(2026, 3, 8, 7)
    assert delivery_time(date(2026, 3, 8), settings, "America/New_York", 7) == utc(2026, 3, 8, 11)


def test_a_half_hour_gap_is_found_to_the_second():
    # Lord Howe Island springs forward by 30 minutes: 02:00 +10:30 becomes 02:30 +11 (15:30 UTC).
    got = delivery_time(date(2026, 10, 4), Settings(timezone="Australia/Lord_Howe"), "Australia/Lord_Howe", 2)
    assert got == utc(2026, 10, 3, 15, 30)


def test_fall_back_means_the_first_occurrence():
    # New York, 2026-11-01: 01:00 happens at 05:00 UTC (EDT) and again at 06:00 UTC (EST).
    settings = Settings(timezone="America/New_York")
    assert delivery_time(date(2026, 11, 1), settings, "America/New_York", 1) == utc(2026, 11, 1, 5)
    # London, 2026-10-25: 01:00 at 00:00 UTC (BST) and at 01:00 UTC (GMT).
    assert delivery_time(date(2026, 10, 25), Settings(timezone="Europe/London"), "Europe/London", 1) \
        == utc(2026, 10, 25, 0)


def test_every_hour_of_every_zone_lands_once_in_the_edition_day():
    settings = Settings(timezone="Europe/London")
    for day in (date(2026, 3, 29), date(2026, 10, 25), date(2026, 11, 25)):
        start = edition_start(day, settings)
        for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago", "Pacific/Auckland", "Asia/Kolkata",
                     "Australia/Adelaide", "America/New_York", "Europe/London", "UTC"):
            times = [delivery_time(day, settings, zone, h) for h in range(24)]
            assert all(start <= t < start + timedelta(hours=26) for t in times), (day, zone)


def test_resolve_falls_back_to_the_newsletter():
    settings = Settings(timezone="Europe/London", delivery_hour=6)
    assert resolve(None, None, settings) == ("Europe/London", 6)
    assert resolve("Asia/Kolkata", 8, settings) == ("Asia/Kolkata", 8)
    assert resolve("Not/AZone", 25, settings) == ("Europe/London", 6)
    s = slot(date(2026, 11, 25), settings, "Pacific/Kiritimati", 7)
    assert (s.due, s.local_date) == (datetime(2026, 11, 25, 17), "2026-11-26")
