import csv
import io

import pytest

from digest.subscribers import store
from digest.subscribers.importer import export_csv, import_csv
from digest.subscribers.store import SubscriberError
from tests.conftest import SAMPLE
from tests.stores import store_url


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
    report = import_csv(engine, write_csv(tmp_path / "s.csv", "email,name,sections\nann@example.com,A,food\n"),
                        settings)
    assert report.updated == 1
    s = store.get(engine, email="ann@example.com")
    assert s.status == "unsubscribed" and s.sections == ("food",)


def test_header_must_name_email(tmp_path, engine, settings):
    from digest.subscribers.importer import CSVFileError
    with pytest.raises(CSVFileError, match="header"):
        import_csv(engine, write_csv(tmp_path / "s.csv", "address,name\nx@example.com,X\n"), settings)


def test_export_round_trip(tmp_path, engine, settings):
    import_csv(engine, SAMPLE / "subscribers.csv", settings)
    store.update(engine, "pixel.player@example.com", status="unsubscribed")
    store.add(engine, "formula@example.com", '=HYPERLINK("http://evil.example")')
    out = io.StringIO()
    n = export_csv(engine, out)
    assert out.getvalue().startswith("email,name,sections,status,timezone,hour,cadence,weekday,paused_until\n")
    assert "'=HYPERLINK" in out.getvalue()
    copy = write_csv(tmp_path / "copy.csv", out.getvalue())
    from digest.store import open_store
    other = open_store(store_url(tmp_path / "other.db"))
    report = import_csv(other, copy, settings)
    assert report.imported == n and not report.rejected

    def key(s):  # nobody who left is resubscribed
        return (s.email, s.name, s.sections, s.status)

    assert sorted(map(key, store.list_all(other))) == sorted(map(key, store.list_all(engine)))


def test_exported_emails_are_formula_escaped_and_imported_back(tmp_path, engine, settings):
    for email in ("=1+2@example.com", "+44@example.com", "-x@example.com"):
        store.add(engine, email)
    out = io.StringIO()
    export_csv(engine, out)
    cells = [row[0] for row in csv.reader(io.StringIO(out.getvalue()))][1:]
    assert cells == ["'=1+2@example.com", "'+44@example.com", "'-x@example.com"]  # a spreadsheet runs none
    from digest.store import open_store
    other = open_store(store_url(tmp_path / "other.db"))
    report = import_csv(other, write_csv(tmp_path / "copy.csv", out.getvalue()), settings)
    assert report.imported == 3 and not report.rejected
    assert [s.email for s in store.list_all(other)] == ["=1+2@example.com", "+44@example.com", "-x@example.com"]


def test_cli_subscribers(cli, workdir):
    assert cli("subscribers", "add", "jo@example.com", "--name", "Jo", "--sections", "tech,world").exit_code == 0
    assert cli("subscribers", "add", "jo@example.com").exit_code == 1
    bad = cli("subscribers", "add", "nope")
    assert bad.exit_code == 2 and "not a valid email" in bad.stderr
    assert cli("subscribers", "add", "x@example.com", "--sections", "weather").exit_code == 2
    assert cli.json("subscribers", "list", "--json") == [
        {"id": 1, "email": "jo@example.com", "name": "Jo", "sections": ["world", "tech"], "status": "active"}]
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


def test_missing_columns_leave_stored_values_alone(tmp_path, engine, settings):
    store.add(engine, "ann@example.com", "Ann", ("tech",))
    import_csv(engine, write_csv(tmp_path / "a.csv", "email\nann@example.com\nnew@example.com\n"), settings)
    ann = store.get(engine, email="ann@example.com")
    assert ann.name == "Ann" and ann.sections == ("tech",)
    import_csv(engine, write_csv(tmp_path / "b.csv", "email,name\nann@example.com,Annie\n"), settings)
    ann = store.get(engine, email="ann@example.com")
    assert ann.name == "Annie" and ann.sections == ("tech",)


def test_unclosed_quote_is_reported_not_swallowed(tmp_path, engine, settings):
    report = import_csv(engine, write_csv(tmp_path / "q.csv",
                                          'email,name,sections\nq@example.com,"unterminated,world\nr@example.com,R,tech\n'
                                          ), settings)
    assert report.imported == 0 and "several lines" in report.rejected[0][1]
    assert report.rejected[0][0] == "lines 2-3"


def test_status_column_on_import(tmp_path, engine, settings):
    report = import_csv(engine, write_csv(tmp_path / "s.csv", "email,name,sections,status\n"
                                          "gone@example.com,G,,unsubscribed\nodd@example.com,O,,sleeping\n"), settings)
    assert store.get(engine, email="gone@example.com").status == "unsubscribed"
    assert "unknown status 'sleeping'" in report.rejected[0][1]


def test_names_lose_control_characters_and_addresses_go_ascii(engine):
    s = store.add(engine, "idn@bücher.example", "Evil\x00\x1bName")
    assert s.name == "EvilName" and s.email == "idn@xn--bcher-kva.example"
    with pytest.raises(SubscriberError, match="not a valid email"):
        store.normalize_email("jösé@example.com")  # SMTPUTF8 local parts: SendGrid cannot send them


def test_operator_cannot_lift_a_suppression(engine):
    store.add(engine, "b@example.com")
    store.update(engine, "b@example.com", status="bounced", reason="bounce: 550")
    with pytest.raises(SubscriberError, match="only they can resubscribe"):
        store.update(engine, "b@example.com", status="active", by_operator=True)
    assert store.update(engine, "b@example.com", status="active").status == "active"  # the subscriber, via the web


def test_ids_are_never_reused(engine):
    first = store.add(engine, "one@example.com")
    store.remove(engine, "one@example.com")
    assert store.add(engine, "two@example.com").id != first.id


def test_a_huge_cell_rejects_only_its_row(tmp_path, engine, settings):
    path = write_csv(tmp_path / "big.csv", "email,name,sections\na@example.com,A,\n"
                     f"b@example.com,{'x' * 140_000},\nc@example.com,C,\n")
    report = import_csv(engine, path, settings)
    assert report.imported == 2 and report.rejected[0][0] == "line 3" and "200" in report.rejected[0][1]


def test_idn_addresses_are_found_by_the_form_they_were_given_in(engine):
    store.add(engine, "u@bücher.example")
    assert store.get(engine, email="U@Bücher.example").email == "u@xn--bcher-kva.example"


def test_site_sections_kept_when_the_newsletter_offers_fewer(tmp_path, engine, settings):
    from dataclasses import replace
    fewer = replace(settings, sections=("world", "tech"), default_sections=("world", "tech"))
    csv_file = write_csv(tmp_path / "s.csv", "email,name,sectoins,sections\na@example.com,A,x,gaming\n")
    report = import_csv(engine, csv_file, fewer)
    assert report.imported == 1 and store.get(engine, email="a@example.com").sections == ("gaming",)
    assert "unknown column 'sectoins'" in report.warnings[0][1]


def test_names_lose_characters_that_are_not_text(engine):
    assert store.clean_name("Jo\u0007 \u001b[1mSmith\ud800\uffff\ufdd0\U0001fffe") == "Jo [1mSmith"
    s = store.add(engine, "jo@example.com", "Jo \udcff\udcfe Smith")  # non-UTF-8 bytes from argv
    assert store.get(engine, email="jo@example.com").name == "Jo Smith" == s.name


def test_cli_add_with_undecodable_bytes_in_the_name(cli, workdir):
    name = b"Jo \xff\xfe Smith".decode("utf-8", "surrogateescape")  # what Python makes of non-UTF-8 argv
    r = cli("subscribers", "add", "jo@example.com", "--name", name)
    assert r.exit_code == 0 and cli.json("subscribers", "list", "--json")[0]["name"] == "Jo Smith"


@pytest.mark.parametrize("header, column", [("email,name,email", "'email'"), ("email,Name,sections,name", "'name'")])
def test_a_column_named_twice_in_the_header_is_a_file_error(tmp_path, engine, settings, header, column):
    from digest.subscribers.importer import CSVFileError
    path = write_csv(tmp_path / "s.csv", f"{header}\na@example.com,A,b@example.com\n")
    with pytest.raises(CSVFileError, match=f"line 1: the header names the column {column} twice"):
        import_csv(engine, path, settings)
    assert store.list_all(engine) == []


def test_importing_a_fifo_says_it_is_not_a_regular_file(cli, workdir):
    import os
    os.mkfifo(workdir / "pipe.csv")
    r = cli("subscribers", "import", "pipe.csv")
    assert r.exit_code == 2 and "pipe.csv: not a regular file" in r.stderr


def test_remembered_domain_checks_give_the_libraries_own_answers():
    """digest.subscribers.store caches email-validator's domain check; the answers must not change."""
    import importlib

    from email_validator import EmailNotValidError, validate_email
    module = importlib.import_module("email_validator.validate_email")
    cached = module.validate_email_domain_name
    assert hasattr(cached, "cache_info")  # the cache is in place (else imports run at half speed)
    addresses = ["Ann@Example.COM", "bo@bücher.example", "x@xn--bcher-kva.example", "a@b", "a@-bad.example",
                 "a@exa mple.com", "c@example.com", "d@EXAMPLE.com", "e@sub.example.co.uk", "f@bücher.example"]

    def answers():
        out = []
        for a in addresses * 2:  # twice: the second round is answered from the cache
            try:
                r = validate_email(a, check_deliverability=False, allow_smtputf8=False)
                out.append((r.normalized, r.ascii_email, r.domain, r.ascii_domain))
            except EmailNotValidError as e:
                out.append(("error", str(e)))
        return out
    with_cache = answers()
    module.validate_email_domain_name = cached.__wrapped__
    try:
        without = answers()
    finally:
        module.validate_email_domain_name = cached
    assert with_cache == without and any(a[0] == "error" for a in without)


def test_an_address_added_by_someone_else_during_an_import_is_updated_not_a_failure(engine, settings, tmp_path,
                                                                                      monkeypatch):
    """Between the chunk's lookup and its insert, a sign-up adds one of the file's addresses."""
    from digest.store import subscribers as subscribers_table
    from digest.store import utcnow
    from digest.subscribers import importer
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("email,name,sections\nnew@example.com,New,world\nrace@example.com,From File,tech\n")
    real = importer._insert_new

    def signup_first(conn, rows):
        conn.execute(subscribers_table.insert().values(email="race@example.com", email_key="race@example.com",
                                                        name="Signed Up", section_mask=0, status="active",
                                                        created_at=utcnow(), updated_at=utcnow()))
        return real(conn, rows)
    monkeypatch.setattr(importer, "_insert_new", signup_first)
    report = import_csv(engine, csv_file, settings)
    assert (report.imported, report.updated, report.rejected) == (1, 1, [])
    race = store.get(engine, email="race@example.com")
    assert race.name == "From File" and race.sections == ("tech",)


@pytest.fixture
def added_meanwhile(engine, monkeypatch):
    """jo@example.com is added by another request just after store.add looked (inside its
    transaction) and saw nobody, as two sign-ups of one address on two web workers can do
    on PostgreSQL."""
    from sqlalchemy.engine import Connection
    real_get, looks = store.get, []

    def get(conn_or_engine, email=None, id=None):
        if email is not None and isinstance(conn_or_engine, Connection) and not looks:
            looks.append(email)
            store.add(engine, "jo@example.com", "Jo")  # the other request wins the race
            return None
        return real_get(conn_or_engine, email=email, id=id)
    monkeypatch.setattr(store, "get", get)


def test_an_address_added_meanwhile_is_already_a_subscriber_not_a_database_error(engine, added_meanwhile):
    with pytest.raises(SubscriberError, match="already a subscriber"):
        store.add(engine, "Jo@example.com", "Again")
    assert [(s.email, s.name) for s in store.list_all(engine)] == [("jo@example.com", "Jo")]


def test_a_signup_racing_another_for_the_same_address_is_no_error(tmp_path, added_meanwhile, engine, caplog):
    """The sign-up is recorded after the answer (digest.web.signup): the losing one of two
    must find the winner's row, not fail with a database error in the log."""
    from tests.web_helpers import hidden, make_site
    site = make_site(tmp_path)  # the same store as `engine`
    form = site.client.get("/digest/subscribe").text
    r = site.client.post("/digest/subscribe", data={"csrf": hidden(form, "csrf"), "email": "jo@example.com"})
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert site.get("jo@example.com").name == "Jo"  # the first sign-up's row stands
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
