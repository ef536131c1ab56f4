"""CSV import and export of subscribers: header `email,name,sections[,status]`, sections
';'-separated.

Each row is checked on its own: good rows are saved, bad rows are listed with their line
number; a later row for the same address (case-insensitively) updates the earlier one.
A column the file does not have leaves the stored value alone.  Import never changes an
existing subscriber's status, and a new row keeps the status the file gives (an export
carries it), so re-importing an export cannot resubscribe someone who left.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sqlalchemy.engine import Engine

from digest.config import ConfigError, Settings
from digest.importing import ImportReport
from digest.store import subscribers as subscribers_table, utcnow
from subscribers import store
from subscribers.store import SubscriberError

HEADER = ("email", "name", "sections", "status")
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


def read_rows(path: Path, settings: Settings, warnings: list | None = None) -> tuple[dict, list[tuple[str, str]]]:
    """Valid rows keyed by lower-cased address (later rows win) and the rejected ones."""
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
    if warnings is not None:
        warnings += [("line 1", f"unknown column '{f}' ignored (known: {', '.join(HEADER)})")
                     for f in fields if f not in HEADER]
    rows, rejected = {}, []
    try:
        start = 2
        for record in reader:
            where = f"line {start}" if reader.line_num == start else f"lines {start}-{reader.line_num}"
            start = reader.line_num + 1
            if None in record:
                rejected.append((where, f"more fields than the header has ({len(fields)})"))
                continue
            values = {k: v for k, v in record.items() if v is not None}
            if not any(v.strip() for v in values.values()):
                continue  # blank line
            if any("\n" in v or "\r" in v for v in values.values()):
                rejected.append((where, "a quoted field runs over several lines (an unclosed quote?); "
                                        "these lines were not imported"))
                continue
            try:
                email = store.normalize_email(unescape_formula(values.get("email") or ""))
                row = {"email": email}
                if "name" in fields:
                    row["name"] = store.clean_name(unescape_formula(values.get("name") or ""))
                if "sections" in fields:
                    row["sections"] = parse_sections(values.get("sections") or "", settings)
                if "status" in fields:
                    status = (values.get("status") or "active").strip().lower() or "active"
                    if status not in store.STATUSES:
                        raise SubscriberError(f"unknown status {status!r} (one of {', '.join(store.STATUSES)})")
                    row["status"] = status
                rows[email.lower()] = row
            except SubscriberError as e:
                rejected.append((where, str(e)))
    except csv.Error as e:
        rejected.append((f"line {reader.line_num}", f"malformed CSV: {e}; the rest of the file was not read"))
    return rows, rejected


def import_csv(engine: Engine, path: Path, settings: Settings) -> ImportReport:
    warnings: list = []
    rows, rejected = read_rows(Path(path), settings, warnings)
    report = ImportReport(rejected=rejected, warnings=warnings)
    with engine.begin() as conn:
        for row in rows.values():
            found = store.get(conn, email=row["email"])
            if found:
                changes = {k: (list(v) if k == "sections" else v) for k, v in row.items() if k in ("name", "sections")}
                conn.execute(subscribers_table.update().where(subscribers_table.c.id == found.id)
                             .values(**changes, updated_at=utcnow()))
                report.updated += 1
            else:
                store.insert(conn, row["email"], row.get("name", ""), row.get("sections", ()),
                             row.get("status", "active"))
                report.imported += 1
    return report


def escape_formula(value: str) -> str:
    """Keep a spreadsheet from running a cell like '=HYPERLINK(...)': prefix a quote."""
    return "'" + value if value.startswith(FORMULA_START) else value


def unescape_formula(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_START) else value


def export_csv(engine: Engine, out) -> int:
    """Write every subscriber in the import format; return how many."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    people = store.list_all(engine)
    for s in people:
        # An address may start with = + or - too (`=1+2@example.com` is valid): escaped like a name.
        writer.writerow([escape_formula(s.email), escape_formula(s.name), ";".join(s.sections), s.status])
    return len(people)
