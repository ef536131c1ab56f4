"""When a reader's digest is due: their local hour on the edition's day, as a UTC instant.

    delivery_time(day, settings, zone, hour)

The edition of `day` starts at midnight in the newsletter's `timezone`; a reader's digest
is due at the first instant at or after that midnight when the reader's own clock (IANA
`zone`) reads `hour`:00.  Only the edition's day, the two zones and the hour decide it, so
every sender, every rerun and the dry run agree on it, whenever they run.

Daylight saving, with zoneinfo: a local time that does not exist (the clock springs
forward over it) means the first instant after the gap; one that happens twice (the
clock falls back) means its first occurrence.

Pure: no store, no clock.  digest.deliver.ledger writes the result into the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.config import Settings

UTC = timezone.utc


def edition_start(day: date, settings: Settings) -> datetime:
    """Midnight of `day` in the newsletter's zone, as an aware UTC datetime."""
    return datetime.combine(day, time(0), tzinfo=settings.tz).astimezone(UTC)


def delivery_time(day: date, settings: Settings, zone: ZoneInfo | str, hour: int) -> datetime:
    """The instant (aware, UTC) the reader in `zone` gets the edition of `day` at `hour`:00."""
    zone = ZoneInfo(zone) if isinstance(zone, str) else zone
    start = edition_start(day, settings)
    local_day = start.astimezone(zone).date()
    for candidate in (local_day, local_day + timedelta(days=1), local_day + timedelta(days=2)):
        at = _wall_clock(candidate, hour, zone)
        if at >= start:
            return at
    raise AssertionError("unreachable: a local clock reads every hour within two days")  # pragma: no cover


def _wall_clock(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """The first instant `zone`'s clock reads `hour`:00 on `day`, or the first after it when
    that time is skipped (spring forward)."""
    wall = datetime.combine(day, time(hour), tzinfo=zone)  # fold=0: the first of two occurrences
    first = wall.astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return first
    # Skipped: fold=0 reads the wall time with the offset before the gap, fold=1 with the
    # one after it; the clock jumps somewhere between those two instants.  Find the jump
    # (offsets change on a whole second) by halving.
    low, high = wall.replace(fold=1).astimezone(UTC), first
    low, high = min(low, high), max(low, high)
    before = low.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


@dataclass(frozen=True)
class Slot:
    """One (zone, hour) of an edition's audience: when its readers' digest is due (UTC,
    naive, as the ledger stores it) and the reader's local date then (for paused_until)."""
    zone: str
    hour: int
    due: datetime
    local_date: str


def resolve(zone: str | None, hour: int | None, settings: Settings) -> tuple[str, int]:
    """A reader's stored zone and hour, the newsletter's where they have none (or one that
    is not a zone or an hour any more: the reader still gets the digest, at the default)."""
    if zone:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = None
    if hour is None or not 0 <= hour <= 23:
        hour = settings.delivery_hour
    return zone or settings.timezone, hour


def slot(day: date, settings: Settings, zone: str, hour: int) -> Slot:
    at = delivery_time(day, settings, zone, hour)
    return Slot(zone, hour, at.replace(tzinfo=None), at.astimezone(ZoneInfo(zone)).date().isoformat())


def local_weekday(s: Slot) -> int:
    """The reader's weekday (0 = Monday) when the slot is due."""
    return date.fromisoformat(s.local_date).weekday()
