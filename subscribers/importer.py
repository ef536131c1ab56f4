"""CSV import and export of subscribers: header `email,name,sections[,status]`, sections
';'-separated, and the delivery choice's optional columns `timezone,hour,cadence,weekday,
paused_until` (blank: the newsletter's setting).

Each row is checked on its own: good rows are saved, bad rows are listed with their line
number; a later row for the same address (case-insensitively) updates the earlier one.
A column the file does not have leaves the stored value alone.  Import never changes an
existing subscriber's status, and a new row keeps the status the file gives (an export
carries it), so re-importing an export cannot resubscribe someone who left.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Iterator

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Engine

from digest.config import ConfigError, Settings, section_mask
from digest.delivery_time import DeliveryTimeError, parse_date, weekday_name
from digest.importing import ImportReport
from digest.store import subscribers as subscribers_table
from digest.store import utcnow
from digest.subscribers import store
from digest.subscribers.store import SubscriberError

DELIVERY_COLUMNS = tuple(store.DELIVERY_FIELDS)  # timezone, hour, cadence, weekday, paused_until
HEADER = ("email", "name", "sections", "status", *DELIVERY_COLUMNS)
# A new row's delivery columns when the file has none of them: the newsletter's settings.
NO_DELIVERY_CHOICE = {"timezone": None, "delivery_hour": None, "cadence": "daily", "weekday": None,
                      "paused_until": None}
FORMULA_START = ("=", "+", "-", "@")  # spreadsheets run cells starting with these


class CSVFileError(ValueError):
    """The file as a whole is unusable (unreadable, wrong header)."""


def parse_sections(value: str, settings: Settings) -> tuple[str, ...]:
    """'tech; science' -> ('tech', 'science') in canonical order; '' -> () (the defaults)."""
    try:
        # Any site section is kept (a newsletter offering fewer may offer more later).
        return settings.check_site_sections(value.replace(",", ";").split(";"), "sections")
    except ConfigError as e:
        raise SubscriberError(str(e).removeprefix("sections: ")) from None


def read_records(path: Path, warnings: list) -> tuple[list[str], Iterator[tuple[str, dict | str]]]:
    """The header's columns, and each data row as (where, values) or (where, why it is unusable).

    Structure only (columns, quoting); what the values mean is `check_row`'s work.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise CSVFileError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise CSVFileError(f"{path}: not UTF-8 text (byte {e.start})") from None
    # The csv module's default 128 KB field limit would abort the whole file on one huge
    # cell; let it through so that row alone is rejected (names are capped at 200).
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    if "email" not in fields:
        raise CSVFileError(f"{path}: line 1: the header must name the columns email,name,sections")
    twice = sorted({f for f in fields if fields.count(f) > 1 and f})
    if twice:  # csv.DictReader would silently keep the last of them
        raise CSVFileError(f"{path}: line 1: the header names the column {', '.join(map(repr, twice))} twice")
    reader.fieldnames = fields
    warnings += [("line 1", f"unknown column '{f}' ignored (known: {', '.join(HEADER)})")
                 for f in fields if f not in HEADER]

    def records():
        try:
            start = 2
            for record in reader:
                where = f"line {start}" if reader.line_num == start else f"lines {start}-{reader.line_num}"
                start = reader.line_num + 1
                if None in record:
                    yield where, f"more fields than the header has ({len(fields)})"
                    continue
                values = {k: v for k, v in record.items() if v is not None}
                if not any(v.strip() for v in values.values()):
                    continue  # blank line
                if any("\n" in v or "\r" in v for v in values.values()):
                    yield where, ("a quoted field runs over several lines (an unclosed quote?); "
                                  "these lines were not imported")
                    continue
                yield where, values
        except csv.Error as e:
            yield f"line {reader.line_num}", f"malformed CSV: {e}; the rest of the file was not read"
    return fields, records()


def check_row(values: dict, fields: list[str], settings: Settings) -> dict:
    """One row's values checked and normalised (the address validated, once); SubscriberError if not."""
    email = store.normalize_email(unescape_formula(values.get("email") or ""))
    row: dict[str, object] = {"email": email}
    if "name" in fields:
        row["name"] = store.clean_name(unescape_formula(values.get("name") or ""))
    if "sections" in fields:
        row["sections"] = parse_sections(values.get("sections") or "", settings)
    if "status" in fields:
        status = (values.get("status") or "active").strip().lower() or "active"
        if status not in store.STATUSES:
            raise SubscriberError(f"unknown status {status!r} (one of {', '.join(store.STATUSES)})")
        row["status"] = status
    given = {c: values.get(c) or "" for c in DELIVERY_COLUMNS if c in fields}
    if given:
        delivery = row["delivery"] = _check_delivery(given, settings)
        if given.get("paused_until", "").strip() and delivery["paused_until"] is None:
            row["warning"] = (f"column 'paused_until': {given['paused_until'].strip()!r} has passed; "
                              "imported without a pause")
    return row


def _check_delivery(given: dict, settings: Settings) -> dict:
    """The row's delivery columns; a bad value names its column.  A pause that has ended
    already (an old export) is no pause, not a reason to drop the subscriber."""
    try:
        return store.check_delivery(given, settings.timezone)
    except store.DeliveryError as e:
        bad = SubscriberError(f"column {e.field!r}: {e.why}")
        if e.field != "paused_until":
            raise bad from None
        try:
            parse_date(given["paused_until"])  # a date, so one that has come
        except DeliveryTimeError:
            raise bad from None
    return store.check_delivery({**given, "paused_until": ""}, settings.timezone)


def _check_chunk(job: tuple[list, list[str], Settings]) -> list[tuple[str, dict | str]]:
    """Check a chunk of records (in a worker process for big files): (where, row or why not)."""
    records, fields, settings = job
    out: list[tuple[str, dict | str]] = []
    for where, values in records:
        if isinstance(values, str):
            out.append((where, values))
            continue
        try:
            out.append((where, check_row(values, fields, settings)))
        except SubscriberError as e:
            out.append((where, str(e)))
    return out


CHUNK = 5000            # rows per transaction: the write lock is held for one chunk at a time
PARALLEL_FROM = 20_000  # rows; below this, worker processes cost more than they save


def _checked_chunks(records, fields: list[str], settings: Settings, parallel: bool):
    """Chunks of checked rows, in file order; address validation (the costly part, ~50 µs a
    row in email-validator) spread over the machine's cores when the file is big."""
    jobs = ((chunk, fields, settings) for chunk in _chunks(records, CHUNK))
    if not parallel:
        yield from map(_check_chunk, jobs)
        return
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    workers = os.cpu_count() or 2
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # pool.map would read the whole file ahead; keep a few chunks in flight, in order.
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.submit(_check_chunk, job))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _chunks(items, size: int):
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_csv(engine: Engine, path: Path, settings: Settings) -> ImportReport:
    """Import in chunks of CHUNK rows, each its own transaction.

    Per chunk: existing addresses are looked up with one query, new ones inserted with
    one executemany of INSERT ... ON CONFLICT DO NOTHING, changed ones updated with another.
    A later row for the same address updates the earlier one, as before.  If the import stops part-way (the database
    fails, Ctrl-C), the chunks already committed stay, and the report says up to where.
    """
    path = Path(path)
    warnings: list = []
    fields, records = read_records(path, warnings)
    report = ImportReport(warnings=warnings)
    parallel = path.stat().st_size > PARALLEL_FROM * 40  # ~40 bytes a row
    with engine.connect() as conn:
        first_new_id = (conn.execute(select(func.max(subscribers_table.c.id))).scalar() or 0) + 1
    last_committed = None
    try:
        for checked in _checked_chunks(records, fields, settings, parallel):
            rows: dict[str, dict] = {}
            for where, row in checked:
                if isinstance(row, str):
                    report.rejected.append((where, row))
                else:
                    if "warning" in row:
                        report.warnings.append((where, row.pop("warning")))
                    rows[row["email"].lower()] = row  # a later row for the address wins
            if rows:
                _save_chunk(engine, rows, report, first_new_id)
            last_committed = checked[-1][0]
    except BaseException as e:
        if last_committed is None:
            raise  # nothing was saved: the error says all
        why = "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {str(e)[:200]}"
        report.interrupted = (f"the import stopped ({why}); the rows up to {last_committed} were saved, "
                              "the rest were not (import the file again to finish: "
                              "saved rows are updated, not doubled)")
        raise ImportInterrupted(report) from e
    return report


class ImportInterrupted(Exception):
    """The import stopped after saving some chunks; `report` says what was saved."""

    def __init__(self, report: ImportReport):
        super().__init__(report.interrupted)
        self.report = report


def _save_chunk(engine: Engine, rows: dict[str, dict], report: ImportReport, first_new_id: int) -> None:
    t = subscribers_table
    now = utcnow()
    with engine.begin() as conn:
        found = dict(conn.execute(select(t.c.email_key, t.c.id).where(t.c.email_key.in_(list(rows)))).all())
        new = [{"email": r["email"], "email_key": key, "name": r.get("name", ""),
                "section_mask": section_mask(r.get("sections", ())), "status": r.get("status", "active"),
                "created_at": now, "updated_at": now, **NO_DELIVERY_CHOICE, **r.get("delivery", {})}
               for key, r in rows.items() if key not in found]
        if new:
            inserted = _insert_new(conn, new)
            report.imported += len(inserted)
            for row in new:  # added meanwhile by someone else (a sign-up, another import): update it
                if row["email_key"] not in inserted:
                    found[row["email_key"]] = 0
        # Only the columns the file has change; an import never changes the status of
        # someone it did not add.  A row for an address this import added in an earlier
        # chunk is a later row of the same file: it wins whole, as within one chunk.
        changed: dict[tuple, list[dict]] = {}
        for key, r in rows.items():
            if key in found:
                values = {k: v for k, v in (("name", r.get("name")),
                                            ("section_mask", section_mask(r["sections"]) if "sections" in r else None))
                          if v is not None}
                values.update(r.get("delivery", {}))  # None here is a choice: the newsletter's setting
                if found[key] >= first_new_id:
                    values.update(email=r["email"], **({"status": r["status"]} if "status" in r else {}))
                changed.setdefault(tuple(sorted(values)), []).append(
                    {"key_": key, **{"v_" + k: v for k, v in values.items()}})
                if found[key] < first_new_id:  # not a row this import inserted in an earlier chunk
                    report.updated += 1
        for columns, params in changed.items():
            conn.execute(t.update().where(t.c.email_key == bindparam("key_"))
                         .values({**{c: bindparam("v_" + c) for c in columns}, "updated_at": now}), params)


def _insert_new(conn, rows: list[dict]) -> set[str]:
    """Insert `rows`; the address keys inserted.

    INSERT ... ON CONFLICT DO NOTHING, sent as multi-row statements (SQLAlchemy's
    "insertmanyvalues", on SQLite and PostgreSQL alike): an address that another writer
    added after the chunk's lookup is skipped here and updated by the caller, instead of
    failing the whole chunk on the unique key.
    """
    from sqlalchemy.dialects import postgresql, sqlite
    t = subscribers_table
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(t).on_conflict_do_nothing(index_elements=[t.c.email_key]).returning(t.c.email_key)
    return set(conn.execute(statement, rows).scalars())


def escape_formula(value: str) -> str:
    """Keep a spreadsheet from running a cell like '=HYPERLINK(...)': prefix a quote."""
    return "'" + value if value.startswith(FORMULA_START) else value


def unescape_formula(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_START) else value


def export_csv(engine: Engine, out, settings: Settings | None = None) -> int:
    """Write every subscriber in the import format; return how many.

    The delivery columns are blank where the reader chose nothing (the newsletter's
    setting applies), and a pause that has ended is no pause (`settings`: whose zone
    decides that for readers without their own)."""
    settings = settings or Settings()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    people = store.list_all(engine)
    for s in people:
        # An address may start with = + or - too (`=1+2@example.com` is valid): escaped like a name.
        pause = s.pause_ahead(settings)
        writer.writerow([escape_formula(s.email), escape_formula(s.name), ";".join(s.sections), s.status,
                         s.timezone or "", "" if s.delivery_hour is None else s.delivery_hour, s.cadence,
                         "" if s.weekday is None else weekday_name(s.weekday), pause.isoformat() if pause else ""])
    return len(people)
