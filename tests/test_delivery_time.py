"""Each reader's delivery time, as stored and as chosen: the checks (digest/delivery_time),
the newsletter's defaults in digest.toml, the subscriber record, CSV import and export, and
the CLI in a subprocess."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta

import pytest

from digest import delivery_time
from digest.config import ConfigError, load_settings
from digest.delivery_time import DeliveryTimeError
from digest.store import open_store
from digest.subscribers import store
from digest.subscribers.importer import export_csv, import_csv
from digest.subscribers.store import DeliveryError
from tests.stores import store_url

FUTURE = (date.today() + timedelta(days=30)).isoformat()
PAST = (date.today() - timedelta(days=3)).isoformat()


# -- the checks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("given, stored", [
    ("Asia/Tokyo", "Asia/Tokyo"), ("  europe/london ", "Europe/London"), ("UTC", "UTC"), ("Etc/UTC", "UTC"),
    ("US/Eastern", "America/New_York"), ("Asia/Calcutta", "Asia/Kolkata"), ("Europe/Kiev", "Europe/Kyiv"),
    ("Europe/Amsterdam", "Europe/Amsterdam"),  # a link, but a place the picker lists: kept
])
def test_zones_are_stored_as_the_place_they_name(given, stored):
    assert delivery_time.check_zone(given) == stored


@pytest.mark.parametrize("bad", ["UTC+2", "Mars/Base", "", "   ", "Factory", "../../etc/passwd", "Europe/", None, 3])
def test_zones_that_are_no_iana_name_are_refused(bad):
    with pytest.raises(DeliveryTimeError):
        delivery_time.check_zone(bad)


def test_the_picker_offers_canonical_places_grouped_by_region():
    groups = dict(delivery_time.zone_groups())
    assert list(groups)[:4] == ["Africa", "America", "Antarctica", "Arctic"] and list(groups)[-1] == "Other"
    assert ("Asia/Tokyo", "Tokyo") in groups["Asia"]
    assert ("America/Argentina/Buenos_Aires", "Argentina / Buenos Aires") in groups["America"]
    offered = {zone for zones in groups.values() for zone, _ in zones}
    assert {"Europe/London", "Europe/Amsterdam", "UTC"} <= offered
    assert not offered & {"US/Eastern", "Asia/Calcutta", "Europe/Kiev", "Etc/GMT+2", "EST5EDT", "GB"}
    # Every zone the picker offers is stored as itself.
    assert all(delivery_time.check_zone(zone) == zone for zone in offered)


@pytest.mark.parametrize("given, hour", [(0, 0), (23, 23), ("7", 7), ("07", 7), ("07:00", 7), (" 18 ", 18)])
def test_hours(given, hour):
    assert delivery_time.check_hour(given) == hour


@pytest.mark.parametrize("bad", [24, -1, "25", "7.5", "07:30", "seven", "", True, None])
def test_bad_hours(bad):
    with pytest.raises(DeliveryTimeError, match="not an hour"):
        delivery_time.check_hour(bad)


@pytest.mark.parametrize("given, day", [("mon", 0), ("Monday", 0), ("FRI", 4), ("sunday", 6), ("3", 3), (6, 6)])
def test_weekdays(given, day):
    assert delivery_time.check_weekday(given) == day


@pytest.mark.parametrize("bad", ["funday", "7", 7, -1, "", "mo", True])
def test_bad_weekdays(bad):
    with pytest.raises(DeliveryTimeError, match="not a weekday"):
        delivery_time.check_weekday(bad)


def test_cadence_and_pause():
    assert delivery_time.check_cadence(" Weekly ") == "weekly"
    with pytest.raises(DeliveryTimeError, match="daily or weekly"):
        delivery_time.check_cadence("monthly")
    assert delivery_time.check_pause(FUTURE, "UTC") == date.fromisoformat(FUTURE)
    for bad, why in ((PAST, "not in the future"), (date.today().isoformat(), "not in the future"),
                     ("2099-02-30", "not a date"), ("31/01/2099", "not a date"), ("tomorrow", "not a date")):
        with pytest.raises(DeliveryTimeError, match=why):
            delivery_time.check_pause(bad, "Pacific/Kiritimati")  # the zone where today comes first


# -- the newsletter's defaults ---------------------------------------------------------------

def test_config_delivery_hour_and_weekly_weekday(tmp_path):
    assert (load_settings(env={}).delivery_hour, load_settings(env={}).weekly_weekday) == (7, 0)
    path = tmp_path / "digest.toml"
    path.write_text('timezone = "Europe/London"\ndelivery_hour = 6\nweekly_weekday = "Saturday"\n')
    s = load_settings(path, env={})
    assert (s.delivery_hour, s.weekly_weekday) == (6, 5)
    for line, why in (("delivery_hour = 24", "delivery_hour: must be a whole number from 0 to 23"),
                      ('delivery_hour = "7"', "delivery_hour: must be a whole number from 0 to 23"),
                      ('weekly_weekday = "someday"', "weekly_weekday: 'someday' is not a weekday")):
        path.write_text(line + "\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        assert str(caught.value) == f"{path}: {why}" or str(caught.value).startswith(f"{path}: {why}")


# -- the subscriber record -----------------------------------------------------------------------

def test_a_new_subscriber_follows_the_newsletters_time(engine, settings):
    s = store.add(engine, "jo@example.com")
    assert (s.timezone, s.delivery_hour, s.cadence, s.weekday, s.paused_until) == (None, None, "daily", None, None)
    assert (s.zone(settings), s.hour(settings), s.weekly_on(settings)) == ("UTC", 7, 0)
    assert "timezone" not in s.to_dict() and "cadence" not in s.to_dict()


def test_a_delivery_choice_is_stored_and_cleared(engine, settings):
    s = store.add(engine, "jo@example.com", delivery={"timezone": "US/Eastern", "hour": "6", "cadence": "weekly",
                                                      "weekday": "fri"}, settings=settings)
    assert (s.timezone, s.delivery_hour, s.cadence, s.weekday) == ("America/New_York", 6, "weekly", 4)
    assert s.to_dict() | {} == {"id": s.id, "email": "jo@example.com", "name": "", "sections": [], "status": "active",
                                "timezone": "America/New_York", "hour": 6, "cadence": "weekly", "weekday": "friday"}
    s = store.update(engine, "jo@example.com", delivery={"paused_until": FUTURE}, settings=settings)
    assert s.paused_until == date.fromisoformat(FUTURE) and s.pause_ahead(settings) == s.paused_until
    assert s.paused_on(date.fromisoformat(FUTURE) - timedelta(days=1)) and not s.paused_on(s.paused_until)
    s = store.update(engine, "jo@example.com", delivery={"timezone": "", "hour": None, "cadence": "",
                                                         "weekday": "", "paused_until": ""}, settings=settings)
    assert (s.timezone, s.delivery_hour, s.cadence, s.weekday, s.paused_until) == (None, None, "daily", None, None)


@pytest.mark.parametrize("field, value, why", [
    ("timezone", "UTC+2", "unknown time zone 'UTC+2'"), ("timezone", "Mars/Base", "unknown time zone"),
    ("timezone", "", None), ("hour", "25", "not an hour"), ("cadence", "monthly", "daily or weekly"),
    ("weekday", "funday", "not a weekday"), ("paused_until", PAST, "not in the future"),
    ("paused_until", "next week", "not a date"),
])
def test_bad_delivery_values_change_nothing(engine, settings, field, value, why):
    before = store.add(engine, "jo@example.com", delivery={"hour": 9}, settings=settings)
    if why is None:  # blank is no error: the newsletter's setting
        assert store.update(engine, "jo@example.com", delivery={field: value}, settings=settings).timezone is None
        return
    with pytest.raises(DeliveryError) as caught:
        store.update(engine, "jo@example.com", name="Changed", delivery={field: value}, settings=settings)
    assert caught.value.field == field and why in caught.value.why and str(caught.value).startswith(field)
    assert store.get(engine, email="jo@example.com") == before
    with pytest.raises(DeliveryError):
        store.add(engine, "new@example.com", delivery={field: value}, settings=settings)
    assert store.get(engine, email="new@example.com") is None


# -- CSV ------------------------------------------------------------------------------------------

def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_delivery_columns_and_bad_rows_named_by_line_and_column(tmp_path, engine, settings):
    report = import_csv(engine, write(tmp_path / "in.csv",
                                      "email,name,timezone,hour,cadence,weekday,paused_until\n"
                                      f"ann@example.com,Ann,Asia/Tokyo,6,weekly,Fri,{FUTURE}\n"
                                      "bob@example.com,Bob,,,,,\n"
                                      "cy@example.com,Cy,UTC+2,7,daily,,\n"
                                      "dee@example.com,Dee,Europe/Paris,25,daily,,\n"
                                      "eve@example.com,Eve,,,fortnightly,,\n"
                                      "fay@example.com,Fay,,,weekly,funday,\n"
                                      "gus@example.com,Gus,,,,,31/12/2099\n"
                                      f"hal@example.com,Hal,US/Eastern,,,,{PAST}\n"), settings)
    assert (report.imported, report.updated) == (3, 0)
    assert dict(report.rejected) == {
        "line 4": "column 'timezone': unknown time zone 'UTC+2' (an IANA name such as Europe/London or Asia/Tokyo)",
        "line 5": "column 'hour': '25' is not an hour (a whole number from 0 to 23, e.g. 7)",
        "line 6": "column 'cadence': 'fortnightly' is not a cadence (daily or weekly)",
        "line 7": "column 'weekday': 'funday' is not a weekday (monday to sunday, mon to sun, "
                  "or 0 = Monday to 6 = Sunday)",
        "line 8": "column 'paused_until': '31/12/2099' is not a date like 2026-12-24",
    }
    # An old export's pause that has ended is no pause: the row is kept, with a warning.
    assert dict(report.warnings)["line 9"] == f"column 'paused_until': '{PAST}' has passed; imported without a pause"
    ann = store.get(engine, email="ann@example.com")
    assert (ann.timezone, ann.delivery_hour, ann.cadence, ann.weekday, ann.paused_until) == \
        ("Asia/Tokyo", 6, "weekly", 4, date.fromisoformat(FUTURE))
    bob = store.get(engine, email="bob@example.com")
    assert (bob.timezone, bob.delivery_hour, bob.cadence, bob.weekday, bob.paused_until) == \
        (None, None, "daily", None, None)
    hal = store.get(engine, email="hal@example.com")
    assert (hal.timezone, hal.paused_until) == ("America/New_York", None)
    for email in ("cy", "dee", "eve", "fay", "gus"):
        assert store.get(engine, email=f"{email}@example.com") is None


def test_csv_columns_change_existing_subscribers_and_absent_columns_leave_them(tmp_path, engine, settings):
    store.add(engine, "ann@example.com", delivery={"timezone": "Asia/Tokyo", "hour": 6, "cadence": "weekly"},
              settings=settings)
    import_csv(engine, write(tmp_path / "a.csv", "email,name\nann@example.com,Ann\n"), settings)
    ann = store.get(engine, email="ann@example.com")
    assert (ann.name, ann.timezone, ann.delivery_hour, ann.cadence) == ("Ann", "Asia/Tokyo", 6, "weekly")
    report = import_csv(engine, write(tmp_path / "b.csv", "email,hour,cadence\nann@example.com,,daily\n"), settings)
    assert report.updated == 1
    ann = store.get(engine, email="ann@example.com")
    assert (ann.timezone, ann.delivery_hour, ann.cadence) == ("Asia/Tokyo", None, "daily")  # blank: the default


def test_export_writes_the_columns_and_imports_back_the_same(tmp_path, engine, settings):
    store.add(engine, "ann@example.com", "Ann", ("tech",), delivery={
        "timezone": "Asia/Tokyo", "hour": 6, "cadence": "weekly", "weekday": "sun", "paused_until": FUTURE},
        settings=settings)
    store.add(engine, "bob@example.com", "Bob")
    store.add(engine, "cy@example.com", delivery={"weekday": 2}, settings=settings)
    out = io.StringIO()
    assert export_csv(engine, out, settings) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0] | {} == {"email": "ann@example.com", "name": "Ann", "sections": "tech", "status": "active",
                            "timezone": "Asia/Tokyo", "hour": "6", "cadence": "weekly", "weekday": "sunday",
                            "paused_until": FUTURE}
    assert (rows[1]["timezone"], rows[1]["hour"], rows[1]["cadence"], rows[1]["weekday"], rows[1]["paused_until"]) \
        == ("", "", "daily", "", "")
    other = open_store(store_url(tmp_path / "other.db"))
    report = import_csv(other, write(tmp_path / "copy.csv", out.getvalue()), settings)
    assert report.imported == 3 and not report.rejected and not report.warnings

    def key(s):
        return (s.email, s.name, s.sections, s.status, s.timezone, s.delivery_hour, s.cadence, s.weekday,
                s.paused_until)

    assert sorted(map(key, store.list_all(other))) == sorted(map(key, store.list_all(engine)))


# -- the CLI, in a subprocess -------------------------------------------------------------------------

def test_cli_add_update_list_export(run_digest, tmp_path):
    done = run_digest("subscribers", "add", "kim@example.com", "--timezone", "Asia/Tokyo", "--hour", "6",
                      "--cadence", "weekly", "--weekday", "fri")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "added kim@example.com: 06:00 Asia/Tokyo weekly fri"
    assert run_digest("subscribers", "add", "lee@example.com").stdout.strip() == \
        "added lee@example.com: 07:00 UTC daily"

    done = run_digest("subscribers", "update", "kim@example.com", "--pause-until", FUTURE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"updated kim@example.com: active, sections (defaults), "
                                   f"06:00 Asia/Tokyo weekly fri, paused until {FUTURE}")
    listed = run_digest("subscribers", "list").stdout.splitlines()
    assert f"06:00 Asia/Tokyo weekly fri, paused until {FUTURE}" in listed[0]
    assert "07:00 UTC daily" in listed[1]
    people = json.loads(run_digest("subscribers", "list", "--json").stdout)
    assert people[0]["paused_until"] == FUTURE and people[0]["weekday"] == "friday"

    run_digest("subscribers", "update", "kim@example.com", "--status", "paused")
    done = run_digest("subscribers", "update", "kim@example.com", "--resume", "--timezone", "")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "updated kim@example.com: active, sections (defaults), 06:00 UTC weekly fri"

    done = run_digest("subscribers", "export", "--out", "out.csv")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.csv").read_text().splitlines()[:2] == [
        "email,name,sections,status,timezone,hour,cadence,weekday,paused_until",
        "kim@example.com,,,active,,6,weekly,friday,"]


@pytest.mark.parametrize("args, message", [
    (("--timezone", "UTC+2"), "error: --timezone: unknown time zone 'UTC+2'"),
    (("--timezone", "Mars/Base"), "error: --timezone: unknown time zone 'Mars/Base'"),
    (("--hour", "24"), "error: --hour: '24' is not an hour (a whole number from 0 to 23, e.g. 7)"),
    (("--cadence", "monthly"), "error: --cadence: 'monthly' is not a cadence (daily or weekly)"),
    (("--weekday", "funday"), "error: --weekday: 'funday' is not a weekday"),
    (("--pause-until", PAST), f"error: --pause-until: {PAST} is not in the future"),
    (("--pause-until", "soon"), "error: --pause-until: 'soon' is not a date like 2026-12-24"),
    (("--resume", "--pause-until", FUTURE), "error: --resume ends a pause"),
])
def test_cli_bad_values_are_usage_errors_that_change_nothing(run_digest, args, message):
    assert run_digest("subscribers", "add", "kim@example.com", "--hour", "9").returncode == 0
    before = run_digest("subscribers", "list", "--json").stdout
    done = run_digest("subscribers", "update", "kim@example.com", "--name", "Kim", *args)
    assert done.returncode == 2 and done.stderr.startswith(message), done.stderr
    assert "Traceback" not in done.stderr
    assert run_digest("subscribers", "list", "--json").stdout == before
    if "--resume" not in args:
        option = args[0]
        done = run_digest("subscribers", "add", "new@example.com", *args) if option != "--pause-until" else None
        if done is not None:
            assert done.returncode == 2 and done.stderr.startswith(message)
