"""When a digest reaches a reader: an IANA time zone, a local hour, daily or weekly (on a
weekday), and a pause until a date.  The newsletter's defaults (digest.toml) and each
reader's own choice (CLI, CSV, preference page) are checked here, in one place.

Time zones are the names zoneinfo knows.  A tz database *link* (an old or alternative
name: US/Eastern, Asia/Calcutta, Europe/Kiev) is accepted and kept as the zone it names
(America/New_York, Asia/Kolkata, Europe/Kyiv) unless it is itself one of the places the
picker lists, so a stored zone is always one the preference page can show.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import zoneinfo
from datetime import date, datetime

CADENCES = ("daily", "weekly")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
HOURS = range(24)
# The picker's groups: the tz database's regions, in this order, then UTC on its own.
REGIONS = ("Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe",
           "Indian", "Pacific")
UTC = "UTC"


class DeliveryTimeError(ValueError):
    """A delivery choice that cannot be used; the message says why (without naming the field:
    the caller knows it as a config key, a CSV column, an option or a form field)."""


def _tzdata_text(name: str) -> str:
    """A file of the tzdata package (a dependency), or '' when it cannot be read."""
    try:
        return importlib.resources.files("tzdata").joinpath("zoneinfo", name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, OSError):
        return ""


@functools.cache
def _known() -> dict[str, str]:
    """Every zone name zoneinfo knows, by its casefolded spelling."""
    return {name.casefold(): name for name in zoneinfo.available_timezones()}


@functools.cache
def places() -> frozenset[str]:
    """The zones the picker offers: the places of the tz database's zone.tab and
    zone1970.tab (one or more per country, none of the backward-compatible aliases), and UTC.

    Why both tables: zone1970.tab merges countries whose clocks agree since 1970 (Amsterdam
    under Brussels); zone.tab keeps a place in each country, which is what readers look for.
    Without the tables (no tzdata package), the names under a region are offered.
    """
    known = set(_known().values())
    names = {line.split("\t")[2] for table in ("zone.tab", "zone1970.tab")
             for line in _tzdata_text(table).splitlines() if line and not line.startswith("#")}
    if not names:
        names = {n for n in known if n.split("/")[0] in REGIONS}
    return frozenset(n for n in names if n in known) | {UTC}


@functools.cache
def _links() -> dict[str, str]:
    """Link name -> the zone it names, from the tz database's tzdata.zi ('L TARGET LINK')."""
    links = {}
    for line in _tzdata_text("tzdata.zi").splitlines():
        if line.startswith("L "):
            _, target, link = line.split()[:3]
            links[link] = target
    return links


def check_zone(value: object) -> str:
    """An IANA zone name as stored: the right spelling (case is forgiven), a link as the place
    it names.  'UTC+2', 'Mars/Base' and '' are refused."""
    name = value.strip() if isinstance(value, str) else ""
    if not name:
        raise DeliveryTimeError("is empty (an IANA time zone such as Europe/London)")
    found = _known().get(name.casefold())
    if found is None or found in ("Factory", "localtime", "posixrules"):
        raise DeliveryTimeError(f"unknown time zone {name!r} (an IANA name such as Europe/London or Asia/Tokyo)")
    if found in places():
        return found
    target = _links().get(found, found)
    if target in ("Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu") or found == "Etc/UTC":
        return UTC
    return target if target in places() else found


def place_of(zone: str) -> str:
    """`zone` as check_zone stores it, or as it is if it cannot be checked (the newsletter's
    own `timezone`, which config checked already): what the picker shows as chosen."""
    try:
        return check_zone(zone)
    except DeliveryTimeError:
        return zone


def check_hour(value: object) -> int:
    """A local hour, 0 to 23: an integer, or '7', '07' or '07:00'."""
    if isinstance(value, int) and not isinstance(value, bool):
        hour = value
    else:
        text = value.strip() if isinstance(value, str) else ""
        found = re.fullmatch(r"(\d{1,2})(?::00)?", text)
        if not found:
            raise DeliveryTimeError(f"{text!r} is not an hour (a whole number from 0 to 23, e.g. 7)")
        hour = int(found.group(1))
    if hour not in HOURS:
        raise DeliveryTimeError(f"{value!r} is not an hour (a whole number from 0 to 23, e.g. 7)")
    return hour


def check_weekday(value: object) -> int:
    """0 = Monday ... 6 = Sunday, from 0-6 or a name: mon..sun or monday..sunday, any case."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 6:
            return value
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit() and int(text) <= 6:
            return int(text)
        for i, day in enumerate(WEEKDAYS):
            if text in (day, day[:3]):
                return i
    raise DeliveryTimeError(f"{value!r} is not a weekday (monday to sunday, mon to sun, or 0 = Monday to 6 = Sunday)")


def check_cadence(value: object) -> str:
    text = value.strip().lower() if isinstance(value, str) else ""
    if text not in CADENCES:
        raise DeliveryTimeError(f"{value!r} is not a cadence (daily or weekly)")
    return text


def parse_date(value: object) -> date:
    """An ISO date, YYYY-MM-DD."""
    text = value.strip() if isinstance(value, str) else ""
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise DeliveryTimeError(f"{text!r} is not a date like 2026-12-24") from None


def today_in(zone: str) -> date:
    return datetime.now(zoneinfo.ZoneInfo(zone)).date()


def check_pause(value: object, zone: str) -> date:
    """A pause's end: an ISO date after today in the reader's zone (`zone`: theirs, else the
    newsletter's).  A day that has come already would pause nothing."""
    day = value if isinstance(value, date) else parse_date(value)
    today = today_in(zone)
    if day <= today:
        raise DeliveryTimeError(f"{day.isoformat()} is not in the future (today is {today.isoformat()} in {zone})")
    return day


def weekday_name(n: int) -> str:
    return WEEKDAYS[n]


def hour_label(hour: int) -> str:
    return f"{hour:02d}:00"


def zone_label(name: str) -> str:
    """'America/Argentina/Buenos_Aires' -> 'Argentina / Buenos Aires' (its region is the group)."""
    _, _, rest = name.partition("/")
    return (rest or name).replace("_", " ").replace("/", " / ")


@functools.cache
def zone_groups() -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """The picker's choices: (region, ((zone, label), ...)) in REGIONS order, each sorted by
    label, then ("Other", (("UTC", "UTC"),))."""
    groups = []
    for region in REGIONS:
        zones = sorted((z for z in places() if z.split("/")[0] == region), key=zone_label)
        if zones:
            groups.append((region, tuple((z, zone_label(z)) for z in zones)))
    rest = sorted(z for z in places() if z.split("/")[0] not in REGIONS)
    groups.append(("Other", tuple((z, z) for z in rest)))
    return tuple(groups)


@functools.cache
def link_places() -> dict[str, str]:
    """Each tz database link whose place differs from its name -> that place (check_zone's
    answer): what a browser reporting 'Asia/Calcutta' means in the picker."""
    out = {}
    for link in _links():
        try:
            place = check_zone(link)
        except DeliveryTimeError:
            continue
        if place != link and place in places():
            out[link] = place
    return out
