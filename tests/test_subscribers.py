import csv
import io

import pytest

from tests.conftest import SAMPLE
from subscribers import store
from subscribers.importer import export_csv, import_csv
from subscribers.store import SubscriberError


def write_csv(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_add_get_update_unsubscribe_remove(engine):
    s = store.add(engine, "Jo@Example.COM", "Jo", ("tech",))
    assert s.email == "Jo@example.com" and s.status == "active"
    assert store.get(engine, email="jo@EXAMPLE.com").id == s.id  # case-insensitive
    with pytest.raises(SubscriberError, match="already a subscriber"):
        store.add(engine, "JO@example.com")
    s = store.update(engine, "jo@example.com", name="Joanna", sections=())
    assert s.name == "Joanna" and s.sections == ()
    s = store.update(engine, "jo@example.com", status="unsubscribed", reason="asked")
    assert s.status == "unsubscribed" and s.status_reason == "asked"
    store.remove(engine, "jo@example.com")
    assert store.get(engine, email="jo@example.com") is None
    with pytest.raises(SubscriberError, match="not a subscriber"):
        store.remove(engine, "jo@example.com")


@pytest.mark.parametrize("bad", ["", "no-at-sign", "a@b", "two@@example.com", "sp ace@example.com"])
def test_invalid_addresses(bad):
    with pytest.raises(SubscriberError):
        store.normalize_email(bad)


def test_csv_import_reports_bad_rows_by_line(tmp_path, engine, settings):
    path = write_csv(tmp_path / "s.csv",
                     "email,name,sections\n"
                     "ann@example.com,Ann,tech;science\n"
                     "not-an-address,Bob,world\n"
                     "cy@example.com,Cy,weather\n"
                     "\n"
                     "ANN@example.com,Ann Again,world\n"
                     "dee@example.com,\"Smith, Dee\",\n"
                     "eve@example.com,Eve,world,extra\n")
    report = import_csv(engine, path, settings)
    assert (report.imported, report.updated) == (2, 0)
    reasons = dict(report.rejected)
    assert "not a valid email" in reasons["line 3"]
    assert "'weather'" in reasons["line 4"]
    assert "more fields" in reasons["line 8"]
    ann = store.get(engine, email="ann@example.com")
    assert ann.name == "Ann Again" and ann.sections == ("world",)  # the later row wins
    dee = store.get(engine, email="dee@example.com")
    assert dee.name == "Smith, Dee" and dee.sections == ()


def test_reimport_updates_but_never_resubscribes(tmp_path, engine, settings):
    store.add(engine, "ann@example.com", "Ann", ())
    store.update(engine, "ann@example.com", status="unsubscribed")
    report = import_csv(engine, write_csv(tmp_path / "s.csv", "email,name,sections\nann@example.com,A,food\n"), settings)
    assert report.updated == 1
    s = store.get(engine, email="ann@example.com")
    assert s.status == "unsubscribed" and s.sections == ("food",)


def test_header_must_name_email(tmp_path, engine, settings):
    from subscribers.importer import CSVFileError
    with pytest.raises(CSVFileError, match="header"):
        import_csv(engine, write_csv(tmp_path / "s.csv", "address,name\nx@example.com,X\n"), settings)


def test_export_round_trip(tmp_path, engine, settings):
    import_csv(engine, SAMPLE / "subscribers.csv", settings)
    out = io.StringIO()
    n = export_csv(engine, out)
    assert out.getvalue().startswith("email,name,sections\n")
    copy = write_csv(tmp_path / "copy.csv", out.getvalue())
    from digest.store import open_store
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    report = import_csv(other, copy, settings)
    assert report.imported == n and not report.rejected
    key = lambda s: (s.email, s.name, s.sections)
    assert sorted(map(key, store.list_all(other))) == sorted(map(key, store.list_all(engine)))


def test_cli_subscribers(cli, workdir):
    assert cli("subscribers", "add", "jo@example.com", "--name", "Jo", "--sections", "tech,world").exit_code == 0
    assert cli("subscribers", "add", "jo@example.com").exit_code == 1
    bad = cli("subscribers", "add", "nope")
    assert bad.exit_code == 2 and "not a valid email" in bad.stderr
    assert cli("subscribers", "add", "x@example.com", "--sections", "weather").exit_code == 2
    assert cli.json("subscribers", "list", "--json") == [
        {"email": "jo@example.com", "name": "Jo", "sections": ["world", "tech"], "status": "active"}]
    assert cli("subscribers", "update", "jo@example.com", "--sections", "food", "--status", "paused").exit_code == 0
    assert cli.json("subscribers", "list", "--json")[0]["status"] == "paused"
    assert cli("subscribers", "update", "nobody@example.com", "--name", "X").exit_code == 1
    assert cli("subscribers", "unsubscribe", "JO@example.com").exit_code == 0
    assert cli.json("subscribers", "list", "--json")[0]["status"] == "unsubscribed"
    (workdir / "in.csv").write_text("email,name,sections\nann@example.com,Ann,tech\nbroken,,\n")
    result = cli("subscribers", "import", "in.csv")
    assert result.exit_code == 1 and "imported 1, updated 0, rejected 1" in result.stdout
    assert "line 3" in result.stderr
    assert cli("subscribers", "import", "missing.csv").exit_code == 2
    assert cli("subscribers", "export", "--out", "out.csv").exit_code == 0
    rows = list(csv.DictReader((workdir / "out.csv").open()))
    assert [r["email"] for r in rows] == ["jo@example.com", "ann@example.com"]
    assert cli("subscribers", "remove", "jo@example.com").exit_code == 0
    assert len(cli.json("subscribers", "list", "--json")) == 1
