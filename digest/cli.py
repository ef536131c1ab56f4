"""The `digest` command: parse, call the library, print.  No logic lives here.

Exit status everywhere: 0 all done; 1 finished but something was rejected or failed
(listed on stderr); 2 usage or configuration error, nothing done.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from enum import Enum
from pathlib import Path
from typing import List, NoReturn, Optional

import typer
from sqlalchemy.exc import OperationalError
from typer.core import TyperGroup

from digest.config import DEFAULT_HOST, DEFAULT_PORT, ConfigError, Settings, check_day, load_settings
from digest.store import BUSY_MESSAGE, StoreError, is_busy, open_store
from digest.text import visible


class _Commands(TyperGroup):
    """Every command runs inside this: a busy database anywhere becomes one clear line.

    Why here and not in each command: any statement of any command may meet another
    process's write lock (a long import, a send), and that is never a traceback.
    The failing statement's transaction was rolled back, so exit 2: nothing done.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OperationalError as e:
            if not is_busy(e):
                raise
            fail(BUSY_MESSAGE, 2)


app = typer.Typer(cls=_Commands, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  help="news-digest: the daily email digest of curated, machine-summarised stories.")
articles_app = typer.Typer(no_args_is_help=True,
                           help="Import, list, feature, reorder, withdraw and restore the site's stories.")
subscribers_app = typer.Typer(no_args_is_help=True, help="Manage who gets the digest.")
editors_app = typer.Typer(no_args_is_help=True, help="The accounts that sign in to the editors' desk (/editor).")
db_app = typer.Typer(no_args_is_help=True, help="The store's schema (Alembic migrations; every command also upgrades).")
app.add_typer(articles_app, name="articles")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(editors_app, name="editors")
app.add_typer(db_app, name="db")


class Format(str, Enum):
    html = "html"
    text = "text"
    eml = "eml"


class Retry(str, Enum):
    failed = "failed"
    unknown = "unknown"


class WhichEdition(str, Enum):
    """`--edition`: the daily edition of D, the weekly edition of the week to D, or both."""
    daily = "daily"
    weekly = "weekly"
    both = "both"


# -- plumbing ---------------------------------------------------------------------------

class _State:
    config: Optional[str] = None
    _settings: Optional[Settings] = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.config)
            except ConfigError as e:
                fail(f"configuration: {e}", 2)
        return self._settings

    def engine(self):
        try:
            return open_store(self.settings.database_url)
        except StoreError as e:
            fail(str(e), 2)


state = _State()


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def note(message: str) -> None:
    typer.echo(message, err=True)


def emit_json(value) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def parse_day(value: Optional[str]) -> date:
    if value is None:
        return state.settings.today()
    try:
        day = date.fromisoformat(value)
    except ValueError:
        fail(f"--date {value!r} is not a date like 2026-11-25", 2)
    try:
        return check_day(day)
    except ConfigError as e:
        fail(f"--date {e}", 2)


def parse_sections(value: Optional[str], option: str = "--sections"):
    if value is None:
        return None
    from digest.subscribers.importer import parse_sections as parse
    from digest.subscribers.store import SubscriberError
    try:
        return parse(value, state.settings)
    except SubscriberError as e:
        fail(f"{option}: {e}", 2)


def parse_digest_sections(value: Optional[str]):
    """--sections of preview and test sends: a,b, or `all` (the whole edition)."""
    from digest.preview import ALL
    if value is not None and value.strip().lower() == ALL:
        return ALL
    return parse_sections(value)


@app.callback()
def main_options(
    config: Optional[str] = typer.Option(
        None, "--config", metavar="FILE",
        help="Settings file (default: $DIGEST_CONFIG, else ./digest.toml if present)."),
):
    """news-digest: pick each subscriber's stories, render one email each, send them.

    Example: digest articles import stories/ && digest send --dry-run
    """
    state.config = config
    state._settings = None  # one process may run several commands (tests, runners)


def _finish_import(report, prefix: str = ""):
    """List each rejected item on stderr, the totals on stdout; exit 1 if anything was rejected."""
    for where, why in report.warnings:
        note(f"warning {prefix}{where}: {why}")
    for where, why in report.rejected:
        note(f"rejected {prefix}{where}: {why}")
    typer.echo(report.line())
    raise typer.Exit(1 if report.rejected else 0)


# -- articles ---------------------------------------------------------------------------

@articles_app.command("import")
def articles_import(
    sources: Optional[List[str]] = typer.Argument(
        None, metavar="[PATH|URL...]",
        help="Markdown files or folders, JSON Feed/RSS/Atom files or feed URLs; none: [feeds] urls."),
    section: Optional[str] = typer.Option(
        None, "--section", metavar="S", help="The section of stories that name none (or none that maps)."),
):
    """Import stories from Markdown and from feeds; re-importing the same id updates it.

    Example: digest articles import content/2026-11-25/ https://news.example.com/feed.json
    """
    from digest.articles.importer import import_articles
    try:
        report = import_articles(state.engine(), sources or [], state.settings, default_section=section)
    except ConfigError as e:
        fail(str(e), 2)
    for where, what in report.notes:
        note(f"{where}: {what}")
    _finish_import(report)


@articles_app.command("list")
def articles_list(
    day: Optional[str] = typer.Option(None, "--date", metavar="YYYY-MM-DD", help="Default: today."),
    all_days: bool = typer.Option(False, "--all", help="Every stored story, not one day's."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """List the stories of one day's edition (or --all), times in the newsletter's zone.

    Example: digest articles list --date 2026-11-25 --json
    """
    from digest.articles.curation import lead_warning
    from digest.articles.repository import all_articles, articles_published_on
    engine, tz = state.engine(), state.settings.tz
    if all_days:
        items, pulled = all_articles(engine), []
    else:
        the_day = parse_day(day)
        items = articles_published_on(engine, the_day, tz)
        pulled = articles_published_on(engine, the_day, tz, withdrawn=True)
    if as_json:
        emit_json([{**a.to_dict(), "teaser": a.teaser, "withdrawn": a in pulled} for a in items + pulled])
    else:
        for a, mark in [(a, "*" if a.featured else " ") for a in items] + [(a, "-") for a in pulled]:
            # Stored text is shown, not obeyed: an escape sequence in a title must not drive the terminal.
            typer.echo(visible(f"{mark} {a.published.astimezone(tz):%Y-%m-%d %H:%M %Z}  "
                               f"{','.join(a.sections):<18} {a.id}  {a.title}"))
    shown = f"{len(items)} stor{'y' if len(items) == 1 else 'ies'}"
    note(shown + (f", {len(pulled)} withdrawn (-)" if pulled else "") + ("" if as_json else "; * featured"))
    if not all_days:
        warning = lead_warning(the_day, items)
        if warning:
            note(f"warning: {warning}")


def _curate(change, article_id: str) -> date:
    import getpass

    from digest.articles.curation import CurationError
    try:
        day = change(state.engine(), article_id, state.settings, f"{getpass.getuser()} (cli)")
    except CurationError as e:
        fail(str(e), 1)
    return day


@articles_app.command("withdraw")
def articles_withdraw(article_id: str = typer.Argument(..., metavar="ID")):
    """Pull a story from its edition (refused once that edition is frozen); re-imports keep it out.

    Example: digest articles withdraw storm-warning
    """
    from digest.articles.curation import withdraw
    day = _curate(withdraw, article_id)
    typer.echo(f"withdrew {article_id} from the edition of {day}")


@articles_app.command("restore")
def articles_restore(article_id: str = typer.Argument(..., metavar="ID")):
    """Put a withdrawn story back in its edition (refused once that edition is frozen).

    Example: digest articles restore storm-warning
    """
    from digest.articles.curation import restore
    day = _curate(restore, article_id)
    typer.echo(f"restored {article_id} to the edition of {day}")


@articles_app.command("feature")
def articles_feature(article_id: str = typer.Argument(..., metavar="ID")):
    """Make a story its edition's lead (the day's other featured stories lose the flag).

    Example: digest articles feature storm-warning
    """
    from digest.articles.curation import feature
    day = _curate(feature, article_id)
    typer.echo(f"{article_id} leads the edition of {day}")


@articles_app.command("update")
def articles_update(
    article_id: str = typer.Argument(..., metavar="ID"),
    priority: int = typer.Option(..., "--priority", metavar="N", help="Lower shows first within its sections."),
):
    """Change a story's priority (refused once its edition is frozen); re-imports keep it.

    Example: digest articles update storm-warning --priority 1
    """
    from digest.articles.curation import set_priority
    day = _curate(lambda engine, story, settings, who: set_priority(engine, story, settings, who, priority),
                  article_id)
    typer.echo(f"{article_id} has priority {priority} in the edition of {day}")


# -- editors ----------------------------------------------------------------------------

def _read_password() -> str:
    """Prompted twice and never echoed on a terminal; otherwise the first line of stdin,
    so a script can pipe it in (printf 'pw\\n' | digest editors add ...)."""
    if sys.stdin.isatty():
        return typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    if not line:
        fail("no password: type it at the prompt, or pipe it on stdin", 2)
    return line.rstrip("\r\n")


@editors_app.command("add")
def editors_add(email: str = typer.Argument(..., metavar="EMAIL")):
    """Create an editor's account; the password is prompted for (or read from stdin).

    Example: digest editors add sam@news.example.com
    """
    from digest import editors
    try:
        editors.normalize_address(email)
    except editors.EditorError as e:
        fail(str(e), 2)
    engine = state.engine()
    try:
        editor = editors.add(engine, email, _read_password())
    except editors.EditorError as e:
        fail(str(e), 1)
    typer.echo(f"added editor {editor.email}")


@editors_app.command("list")
def editors_list():
    """List the editors, with their last sign-in and any lock-out.

    Example: digest editors list
    """
    from digest import editors
    from digest.store import utcnow
    accounts = editors.list_all(state.engine())
    now = utcnow()
    for e in accounts:
        last = f"last signed in {e.last_signin_at:%Y-%m-%d %H:%M} UTC" if e.last_signin_at else "never signed in"
        locked = (f"; locked until {e.locked_until:%H:%M} UTC" if e.locked_until and e.locked_until > now else "")
        typer.echo(visible(f"{e.email:<40} {last}{locked}"))
    note(f"{len(accounts)} editor(s)")


@editors_app.command("remove")
def editors_remove(email: str = typer.Argument(..., metavar="EMAIL")):
    """Delete an editor's account (signed-in sessions stop working).

    Example: digest editors remove sam@news.example.com
    """
    from digest import editors
    try:
        removed = editors.remove(state.engine(), email)
    except editors.EditorError as e:
        fail(str(e), 1)
    typer.echo(f"removed editor {removed.email}")


# -- subscribers ------------------------------------------------------------------------

def _subscriber_call(fn, *args, **kwargs):
    from digest.subscribers.store import SubscriberError
    try:
        return fn(*args, **kwargs)
    except SubscriberError as e:
        fail(str(e), 1)


# The delivery choice's options, by the store's field names (digest.subscribers.store.DELIVERY_FIELDS).
_DELIVERY_OPTIONS = {"timezone": "--timezone", "hour": "--hour", "cadence": "--cadence", "weekday": "--weekday",
                     "paused_until": "--pause-until"}


def _delivery_given(**options) -> dict:
    """The delivery fields given on the command line ('' too: back to the newsletter's)."""
    return {field: value for field, value in options.items() if value is not None}


def _delivery_call(fn, *args, **kwargs):
    """Like _subscriber_call; a bad delivery value is a usage error naming its option."""
    from digest.subscribers.store import DeliveryError, SubscriberError
    try:
        return fn(*args, **kwargs)
    except DeliveryError as e:
        fail(f"{_DELIVERY_OPTIONS[e.field]}: {e.why}", 2)
    except SubscriberError as e:
        fail(str(e), 1)


def _when(s) -> str:
    """'07:00 Europe/London daily', '19:00 Asia/Tokyo weekly fri, paused until 2026-12-20'."""
    from digest.delivery_time import hour_label, weekday_name
    settings = state.settings
    when = f"{hour_label(s.hour(settings))} {s.zone(settings)} {s.cadence}"
    if s.cadence == "weekly":
        when += " " + weekday_name(s.weekly_on(settings))[:3]
    pause = s.pause_ahead(settings)
    return when + (f", paused until {pause}" if pause else "")


_TIMEZONE = typer.Option(None, "--timezone", metavar="ZONE",
                         help="IANA zone, e.g. Asia/Tokyo ('' = the newsletter's timezone).")
_HOUR = typer.Option(None, "--hour", metavar="H", help="Local hour 0-23 ('' = the newsletter's delivery_hour).")
_CADENCE = typer.Option(None, "--cadence", metavar="daily|weekly", help="Default: daily.")
_WEEKDAY = typer.Option(None, "--weekday", metavar="DAY",
                        help="For weekly: mon..sun or 0-6 ('' = the newsletter's weekly_weekday).")


@subscribers_app.command("add")
def subscribers_add(
    email: str = typer.Argument(..., metavar="EMAIL"),
    name: str = typer.Option("", "--name", help="Display name used in the greeting."),
    sections: Optional[str] = typer.Option(None, "--sections", metavar="a,b",
                                           help="Default: the newsletter's defaults."),
    timezone: Optional[str] = _TIMEZONE,
    hour: Optional[str] = _HOUR,
    cadence: Optional[str] = _CADENCE,
    weekday: Optional[str] = _WEEKDAY,
):
    """Add one subscriber (active at once; the web sign-up uses double opt-in).

    Example: digest subscribers add jo@example.com --name "Jo" --sections tech,science --timezone Asia/Tokyo
    """
    from digest.subscribers import store
    from digest.subscribers.store import SubscriberError, normalize_email
    try:
        normalize_email(email)
    except SubscriberError as e:
        fail(str(e), 2)
    delivery = _delivery_given(timezone=timezone, hour=hour, cadence=cadence, weekday=weekday)
    s = _delivery_call(store.add, state.engine(), email, name, parse_sections(sections) or (),
                       delivery=delivery, settings=state.settings)
    typer.echo(f"added {s.email}: {_when(s)}")


@subscribers_app.command("import")
def subscribers_import(file: Path = typer.Argument(..., metavar="FILE.csv")):
    """Import a CSV with the header email,name,sections (sections ';'-separated).

    Example: digest subscribers import people.csv
    """
    from digest.subscribers.importer import CSVFileError, ImportInterrupted, import_csv
    if not file.is_file():
        why = ("is a folder, not a file" if file.is_dir() else
               "not a regular file (a pipe or device?)" if file.exists() else "no such file")
        fail(f"{file}: {why}", 2)
    try:
        report = import_csv(state.engine(), file, state.settings)
    except CSVFileError as e:
        fail(str(e), 1)
    except ImportInterrupted as e:
        note(f"error: {e.report.interrupted}")
        typer.echo(e.report.line())
        raise typer.Exit(130 if isinstance(e.__cause__, KeyboardInterrupt) else 1) from None
    _finish_import(report, prefix=f"{file}, ")


@subscribers_app.command("list")
def subscribers_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    status: Optional[str] = typer.Option(None, "--status", help="Only this status."),
):
    """List subscribers with their sections, status and delivery time (hour, zone, cadence, pause).

    Example: digest subscribers list --json
    """
    from digest.subscribers import store
    if status and status not in store.STATUSES:  # a choice among the store's statuses: parsing
        fail(f"--status must be one of {', '.join(store.STATUSES)}", 2)
    people = store.list_all(state.engine(), status=status)
    if as_json:
        emit_json([s.to_dict() for s in people])
        return
    for s in people:
        why = f"  [{s.status_reason}]" if s.status_reason else ""
        typer.echo(f"{s.email:<40} {s.status:<12} {';'.join(s.sections) or '(defaults)':<30} {_when(s):<34} "
                   f"{s.name or '-'}{why}")
    note(f"{len(people)} subscriber(s)")


@subscribers_app.command("update")
def subscribers_update(
    email: str = typer.Argument(..., metavar="EMAIL"),
    name: Optional[str] = typer.Option(None, "--name"),
    sections: Optional[str] = typer.Option(None, "--sections", metavar="a,b", help="'' means the defaults."),
    status: Optional[str] = typer.Option(None, "--status", help="active or paused."),
    timezone: Optional[str] = _TIMEZONE,
    hour: Optional[str] = _HOUR,
    cadence: Optional[str] = _CADENCE,
    weekday: Optional[str] = _WEEKDAY,
    pause_until: Optional[str] = typer.Option(None, "--pause-until", metavar="DATE",
                                              help="No digest before DATE (YYYY-MM-DD, in their zone)."),
    resume: bool = typer.Option(False, "--resume", help="End a pause now: the pause date, and status paused."),
):
    """Change a subscriber's name, sections, status (active/paused) or delivery time.

    Example: digest subscribers update jo@example.com --cadence weekly --weekday fri --hour 18
    """
    from digest.subscribers import store
    from digest.subscribers.store import SubscriberError
    try:
        store.check_operator_status(status)
    except SubscriberError as e:
        fail(f"--status {e}", 2)
    if resume and (status or pause_until is not None):
        fail("--resume ends a pause: give it without --status and --pause-until", 2)
    delivery = _delivery_given(timezone=timezone, hour=hour, cadence=cadence, weekday=weekday,
                               paused_until=pause_until)
    changes: dict = {"status": status, "reason": None, "by_operator": True}
    if resume:  # only a pause ends: someone who left stays as they are
        delivery["paused_until"] = None
        changes = {"status": "active", "reason": None, "status_only_from": ("paused",)}
    s = _delivery_call(store.update, state.engine(), email, name=name, sections=parse_sections(sections),
                       delivery=delivery, settings=state.settings, **changes)
    typer.echo(f"updated {s.email}: {s.status}, sections {';'.join(s.sections) or '(defaults)'}, {_when(s)}")


@subscribers_app.command("unsubscribe")
def subscribers_unsubscribe(email: str = typer.Argument(..., metavar="EMAIL")):
    """Unsubscribe (the row is kept with status 'unsubscribed').

    Example: digest subscribers unsubscribe jo@example.com
    """
    from digest.subscribers import store
    s = _subscriber_call(store.unsubscribe_address, state.engine(), email, "by an operator")
    typer.echo(f"unsubscribed {s.email}" if s.status == "unsubscribed" else f"{s.email} is already {s.status}")


@subscribers_app.command("remove")
def subscribers_remove(email: str = typer.Argument(..., metavar="EMAIL")):
    """Erase a subscriber and their ledger rows (right to erasure).

    Example: digest subscribers remove jo@example.com
    """
    from digest.subscribers import store
    s = _subscriber_call(store.remove, state.engine(), email)
    typer.echo(f"removed {s.email}")


@subscribers_app.command("export")
def subscribers_export(out: Optional[Path] = typer.Option(None, "--out", metavar="FILE", help="Default: stdout.")):
    """Export subscribers as CSV in the import format.

    Example: digest subscribers export --out backup.csv
    """
    from digest.subscribers.importer import export_csv
    engine = state.engine()
    if out:
        try:
            with out.open("w", encoding="utf-8", newline="") as f:
                n = export_csv(engine, f, state.settings)
        except OSError as e:
            fail(f"--out {out}: {e.strerror or e}", 2)
        note(f"exported {n} subscriber(s) to {out}")
    else:
        export_csv(engine, sys.stdout, state.settings)


# -- preview, send, status ----------------------------------------------------------------

@app.command()
def preview(
    day: Optional[str] = typer.Option(None, "--date", metavar="YYYY-MM-DD", help="Default: today."),
    subscriber: Optional[str] = typer.Option(None, "--subscriber", metavar="EMAIL"),
    sections: Optional[str] = typer.Option(None, "--sections", metavar="a,b|all",
                                           help="A set of sections, or all: the whole edition."),
    fmt: Format = typer.Option(Format.html, "--format", help="html, text or eml."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE", help="Default: stdout."),
    weekly: bool = typer.Option(False, "--weekly", help="The weekly digest of the week to --date instead."),
):
    """Show exactly what a subscriber (or a set of sections) would get.

    Example: digest preview --subscriber jo@example.com --format html --out jo.html
    """
    from digest import preview as previewing
    from digest.tokens import link_signer
    if bool(subscriber) == (sections is not None):
        fail("give exactly one of --subscriber EMAIL or --sections a,b (or --sections all)", 2)
    try:
        shown = previewing.preview(state.engine(), state.settings, parse_day(day),
                                   link_signer(state.settings, real=False, notify=note),
                                   subscriber=subscriber, sections=parse_digest_sections(sections), fmt=fmt.value,
                                   weekly=weekly)
    except previewing.PreviewError as e:
        fail(str(e), 1)
    for n in shown.notes:
        note(f"note: {n}")
    result = shown.content
    if out:
        try:
            out.write_bytes(result)
        except OSError as e:
            fail(f"--out {out}: {e.strerror or e}", 2)
        note(f"wrote {out} ({len(result):,} bytes)")
    else:
        sys.stdout.buffer.write(result)
        sys.stdout.flush()


@app.command()
def send(
    day: Optional[str] = typer.Option(None, "--date", metavar="YYYY-MM-DD", help="Default: today."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write .eml files to the outbox; send nothing."),
    sample: Optional[int] = typer.Option(None, "--sample", min=0, metavar="N",
                                         help="With --dry-run: build and check every message, write only N "
                                              "(spread over the distinct digests)."),
    outbox: Optional[Path] = typer.Option(None, "--outbox", metavar="DIR", help="Default: outbox/<date>/."),
    retry: Optional[Retry] = typer.Option(None, "--retry", help="Resend the edition's failed or unknown rows."),
    refreeze: bool = typer.Option(False, "--refreeze", help="A started edition takes the day's stories as stored "
                                  "now (after fixing a broken story); sent rows are not resent."),
    sandbox: bool = typer.Option(False, "--sandbox",
                                 help="SendGrid sandbox mode: validated, not delivered, not recorded."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, metavar="N",
                                help="Sender processes on this host, sharing the edition (real sends)."),
    yes: bool = typer.Option(False, "--yes", help="Start the send of an edition other than today's or "
                             "yesterday's (retries of a started edition need no --yes)."),
    test_to: Optional[str] = typer.Option(None, "--test-to", metavar="ADDR[,ADDR...]",
                                          help="A test send: one digest, subject [TEST], to these editors' "
                                               "addresses only; no ledger, nothing frozen."),
    subscriber: Optional[str] = typer.Option(None, "--subscriber", metavar="EMAIL",
                                             help="With --test-to: this subscriber's digest (links lead nowhere)."),
    sections: Optional[str] = typer.Option(None, "--sections", metavar="a,b|all",
                                           help="With --test-to: the digest of these sections (default: all)."),
    edition: WhichEdition = typer.Option(WhichEdition.both, "--edition",
                                         help="daily, weekly, or both (the default: the weekly edition "
                                              "too when anyone reads weekly)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
):
    """Send the day's digest to every subscriber (safe to rerun: never sends twice);
    with --test-to, one digest to editors only, marked [TEST].

    Example: digest send --dry-run --date 2026-11-25
    """
    from digest import dispatch
    the_day = parse_day(day)
    if test_to is not None:
        _test_send(the_day, test_to, subscriber, sections, as_json, edition.value == "weekly", dry_run=dry_run,
                   sandbox=sandbox, retry=retry.value if retry else None, workers=workers, sample=sample, outbox=outbox,
                   refreeze=refreeze)
    if subscriber is not None or sections is not None:
        fail("--subscriber and --sections go with --test-to (the day's send goes to every subscriber)", 2)
    if dry_run and sandbox:  # two modes asked for at once
        fail("--dry-run cannot be combined with --retry or --sandbox", 2)
    mode = "dry-run" if dry_run else "sandbox" if sandbox else "send"
    try:
        with _progress() as progress:
            summaries = dispatch.run_editions(
                state.settings, the_day, edition.value, mode=mode, retry=retry.value if retry else None,
                refreeze=refreeze, workers=workers, sample=sample, outbox=outbox, notify=note,
                progress=progress.advance, on_plan=progress.start, log=progress.log, yes=yes)
    except (ConfigError, StoreError) as e:
        fail(str(e), 2)
    if as_json:  # one object, as before; the weekly run's summary under "weekly" when both ran
        found = [s.to_dict() for s in summaries]
        emit_json({**found[0], "weekly": found[1]} if len(found) > 1 else found[0])
    for summary in summaries:
        _report_send(summary, as_json=False, quiet=as_json)
    raise typer.Exit(max(s.exit_code for s in summaries))


def _test_send(the_day: date, test_to: str, subscriber: Optional[str], sections: Optional[str], as_json: bool,
               weekly: bool, **others) -> NoReturn:
    from digest import dispatch
    from digest.testsend import TestSendError
    try:
        dispatch.check_test_options(**others)
    except ConfigError as e:
        fail(str(e), 2)
    try:
        sent = dispatch.run_test(state.settings, the_day, test_to.split(","), subscriber=subscriber,
                                 sections=parse_digest_sections(sections), weekly=weekly, notify=note)
    except TestSendError as e:
        fail(str(e), e.exit_code)
    except (ConfigError, StoreError) as e:
        fail(str(e), 2)
    for n in sent.notes:
        note(f"note: {n}")
    if as_json:
        emit_json(sent.to_dict())
    else:
        where = f"to the outbox {sent.outbox}" if sent.via == "outbox" else "through SendGrid"
        typer.echo(f"test send {sent.date}: '{visible(sent.subject)}' to {', '.join(sent.recipients) or 'nobody'} "
                   f"{where}; no ledger row, nothing frozen")
    for p in sent.problems:
        note(f"{p['status']}: {p['email']}: {p['reason']}")
    raise typer.Exit(sent.exit_code)


class _progress:
    """A progress bar on a terminal; silent when stderr is not one (cron, pipes)."""

    def __init__(self):
        self.bar = None
        self.tty = sys.stderr.isatty()

    def __enter__(self):
        return self

    def start(self, total: int) -> None:
        if self.tty and total:
            self.bar = typer.progressbar(length=total, label="sending", file=sys.stderr)
            self.bar.__enter__()

    def advance(self, n: int) -> None:
        if self.bar:
            self.bar.update(n)

    def log(self, message: str) -> None:
        """A line above the bar (retries, splits), instead of one written through it."""
        if self.bar:
            sys.stderr.write("\r\033[K")
        note(message)
        if self.bar:
            self.bar.render_progress()

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)


def _report_send(s, as_json: bool, quiet: bool = False) -> None:
    """The summary's notes on stderr, and its line on stdout (`quiet`: notes only, the JSON is out)."""
    if as_json:
        emit_json(s.to_dict())
    as_json = as_json or quiet
    for n in s.notes:
        note(f"note: {n}")
    for w in s.warnings:
        note(f"warning: {w}")
    if s.fatal:
        note(f"error: {s.fatal}")
    if s.stories == 0:
        note(f"error: the edition of {s.date} has no stories; nothing was sent (import the day's articles first)")
    if as_json:
        return
    if s.mode == "dry-run":
        typer.echo(f"dry run {s.date}: {s.stories} stories, {s.recipients} recipients in {s.digests} distinct "
                   f"digest(s), {s.delivered} emails written to {s.outbox}, {s.skipped_empty} skipped (empty digest)"
                   + (f", {s.skipped_lead_only} skipped (lead story only)" if s.skipped_lead_only else ""))
        for p in s.problems:
            note(f"{p['status']}: {p['email']}: {p['reason']}")
        return
    if s.mode == "sandbox":
        typer.echo(f"sandbox {s.date}: {s.delivered} of {s.recipients} recipients accepted by SendGrid "
                   f"in {s.requests} batch(es); nothing delivered, nothing recorded"
                   + (f"; {s.held} due beyond 72 hours not tried" if s.held else ""))
    else:
        c = s.counts
        typer.echo(f"send {s.date}: {s.delivered} sent now in {s.requests} batch(es); edition: "
                   f"{c.get('sent', 0)} sent, {c.get('pending', 0)} pending, {c.get('failed', 0)} failed, "
                   f"{c.get('unknown', 0)} unknown"
                   + (f"; {s.skipped_empty} skipped (empty digest)" if s.skipped_empty else "")
                   + (f"; {s.skipped_lead_only} skipped (lead story only)" if s.skipped_lead_only else "")
                   + (f"; {s.withdrawn} withdrawn (no longer active since the edition froze)" if s.withdrawn else "")
                   + (f"; {s.scheduled} of the sent are scheduled (due later)" if s.scheduled else "")
                   + (f"; {s.held} due beyond 72 hours, left pending" if s.held else ""))
    for p in s.problems:
        note(f"{p['status']}: {p['email']}: {p['reason']}")
    if s.mode == "send" and any(p["status"] == "unknown" for p in s.problems):
        note("unknown rows may have been delivered; they are never resent automatically. "
             "Check SendGrid's activity feed, then `digest send --retry unknown` if they were not.")


@app.command()
def check(
    day: Optional[str] = typer.Option(None, "--date", metavar="YYYY-MM-DD", help="Default: today."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    allow: Optional[str] = typer.Option(None, "--allow", metavar="CODE[,CODE...]",
                                        help="Problems to accept: reported as notes (e.g. empty-section)."),
):
    """The edition's quality report: exit 0 when clean, 1 on a problem (so `digest check && digest send`).

    Example: digest check --date 2026-11-25 --allow empty-section
    """
    from digest.check import CheckError, allowed_codes, check_edition
    from digest.tokens import link_signer
    the_day = parse_day(day)
    try:
        accepted = allowed_codes([c.strip() for c in (allow or "").split(",") if c.strip()])
    except CheckError as e:
        fail(f"--allow: {e}", 2)
    report = check_edition(state.engine(), state.settings, the_day,
                           link_signer(state.settings, real=False, notify=lambda _m: None), allow=accepted)
    if as_json:
        emit_json(report.to_dict())
    else:
        for kind, found in (("problem", report.problems), ("note", report.notes)):
            for f in found:
                typer.echo(visible(f"{kind} [{f.code}] {f.where}: {f.message}"))
        typer.echo(f"check {report.date}: {len(report.problems)} problem(s), {len(report.notes)} note(s); "
                   f"{report.stories} stories, {report.digests} digest(s) checked (the whole edition included) "
                   f"for {report.subscribers} active subscriber(s)" + ("; frozen" if report.frozen else ""))
    raise typer.Exit(report.exit_code)


@app.command()
def cancel(
    day: str = typer.Option(..., "--date", metavar="YYYY-MM-DD", help="The edition whose scheduled sends to stop."),
    pause: bool = typer.Option(False, "--pause", help="Hold them at SendGrid instead (until --resume)."),
    resume: bool = typer.Option(False, "--resume", help="Take a pause off: SendGrid sends them when due."),
):
    """Cancel (or pause, or resume) an edition's sends scheduled at SendGrid.

    Example: digest cancel --date 2026-11-25 --pause
    """
    from digest import cancel as cancelling
    from digest.deliver.transport import FatalTransportError
    if pause and resume:
        fail("give at most one of --pause or --resume", 2)
    action = "pause" if pause else "resume" if resume else "cancel"
    try:
        done = cancelling.run_editions(state.settings, parse_day(day), action)
    except (ConfigError, StoreError) as e:
        fail(str(e), 2)
    except cancelling.CancelRefused as e:
        fail(str(e), 1)
    except FatalTransportError as e:
        fail(str(e), e.exit_code)
    for one in done:
        typer.echo(one.line())


@app.command()
def status(
    day: Optional[str] = typer.Option(None, "--date", metavar="YYYY-MM-DD", help="Default: today."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    edition: WhichEdition = typer.Option(WhichEdition.both, "--edition",
                                         help="daily, weekly, or both (the default: the weekly edition "
                                              "too once its send has started)."),
):
    """Show the ledger of an edition: counts, and every failed or unknown recipient.

    Example: digest status --date 2026-11-25 --json
    """
    from digest.edition import is_frozen
    from digest.sending import status as edition_status
    engine = state.engine()
    when = parse_day(day)
    shown = []
    if edition != WhichEdition.weekly:
        shown.append(edition_status(engine, when))
    if edition == WhichEdition.weekly or (edition == WhichEdition.both and is_frozen(engine, when, weekly=True)):
        shown.append(edition_status(engine, when, weekly=True))
    if as_json:  # one object, as before; the weekly edition's under "weekly" when both are shown
        emit_json({**shown[0].report, "weekly": shown[1].report} if len(shown) > 1 else shown[0].report)
    for found in shown:
        _report_status(found, as_json)
    raise typer.Exit(max(found.exit_code for found in shown))


def _report_status(found, as_json: bool) -> None:
    from digest.deliver import ledger
    report = found.report
    the_day = report["date"]
    if not as_json:
        c = report["counts"]
        typer.echo(f"{the_day}: " + ", ".join(f"{c.get(k, 0)} {k}" for k in ledger.STATUSES)
                   + (f" ({report['scheduled']} of them scheduled)" if report.get("scheduled") else "")
                   + (f"; {report['withdrawn']} withdrawn (left after the freeze)" if report.get("withdrawn") else ""))
        if report.get("next_due"):
            typer.echo(f"  next due: {report['next_due']} UTC")
        if report.get("held"):
            typer.echo(f"  {report['held']} pending row(s) are due more than 72 hours ahead: a later send sends them")
        for p in report["problems"]:
            typer.echo(f"  {p['status']:<8} {p['email']}: {p['reason']}")
        for f in report.get("in_flight", []):
            typer.echo(f"  in flight: {f['rows']} at sender {f['sender']} (lease until {f['lease_until']} UTC)")
    if not found.frozen:
        note(f"the edition of {the_day} has not been sent (no ledger yet)")


@app.command()
def serve(
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to listen on."),
    port: int = typer.Option(DEFAULT_PORT, "--port", min=0, max=65535, help="Port to listen on (0: any free one)."),
):
    """Run the preference centre, one-click unsubscribe, sign-up, SendGrid webhook and editors' desk.

    Example: DIGEST_BASE_URL=https://news.example.com/digest digest serve --port 8000
    """
    from digest.web.app import run_server
    try:
        run_server(state.settings, host, port, notify=note)
    except ConfigError as e:
        fail(str(e), 2)


# -- db ---------------------------------------------------------------------------------

def _store_call(fn, *args):
    """A store operation; a StoreError is one line and exit 2 (nothing done)."""
    try:
        return fn(*args)
    except StoreError as e:
        fail(str(e), 2)


@db_app.command("upgrade")
def db_upgrade():
    """Migrate the store to the newest schema (creating it if empty; adopting an old store).

    Example: DIGEST_DATABASE_URL=postgresql://digest@db/digest digest db upgrade
    """
    from digest.store import upgrade_store
    before, head = _store_call(upgrade_store, state.settings.database_url)
    if before.at_head:
        typer.echo(f"already at {head} (head)")
    else:
        typer.echo(f"upgraded from {before.describe()} to {head} (head)")


@db_app.command("current")
def db_current():
    """Print the store's schema revision and whether it is the head (does not migrate).

    Example: digest db current
    """
    from digest.store import schema_state
    current = _store_call(schema_state, state.settings.database_url)
    if current.at_head:
        typer.echo(f"{current.revision} (head)")
    else:
        typer.echo(f"{current.describe()} (not head: head is {current.head}; run digest db upgrade)")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
