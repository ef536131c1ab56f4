"""CSV import and export of subscribers: header `email,name,sections`, sections ';'-separated.

Each row is checked on its own: good rows are saved, bad rows are listed with their line
number; a later row for the same address (case-insensitively) updates the earlier one.
Import never changes an existing subscriber's status, so re-importing an export cannot
resubscribe someone who left.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from digest.config import ConfigError, Settings
from digest.store import subscribers as subscribers_table, utcnow
from subscribers import store
from subscribers.store import SubscriberError

HEADER = ("email", "name", "sections")


@dataclass
class ImportReport:
    imported: int = 0
    updated: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # ("line N", why)

    def line(self) -> str:
        return f"imported {self.imported}, updated {self.updated}, rejected {len(self.rejected)}"


class CSVFileError(ValueError):
    """The file as a whole is unusable (unreadable, wrong header)."""


def parse_sections(value: str, settings: Settings) -> tuple[str, ...]:
    """'tech; science' -> ('tech', 'science') in canonical order; '' -> () (the defaults)."""
    try:
        return settings.check_sections(value.replace(",", ";").split(";"), "sections")
    except ConfigError as e:
        raise SubscriberError(str(e).removeprefix("sections: ")) from None


def read_rows(path: Path, settings: Settings) -> tuple[dict, list[tuple[str, str]]]:
    """Valid rows keyed by lower-cased address (later rows win) and the rejected ones."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise CSVFileError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise CSVFileError(f"{path}: not UTF-8 text (byte {e.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    if "email" not in fields:
        raise CSVFileError(f"{path}: line 1: the header must name the columns email,name,sections")
    reader.fieldnames = fields
    rows, rejected = {}, []
    try:
        for record in reader:
            where = f"line {reader.line_num}"
            if None in record:
                rejected.append((where, f"more fields than the header has ({len(fields)})"))
                continue
            if not any((v or "").strip() for v in record.values()):
                continue  # blank line
            try:
                email = store.normalize_email(record.get("email") or "")
                rows[email.lower()] = (email, store.clean_name(record.get("name")),
                                       parse_sections(record.get("sections") or "", settings), where)
            except SubscriberError as e:
                rejected.append((where, str(e)))
    except csv.Error as e:
        rejected.append((f"line {reader.line_num}", f"malformed CSV: {e}; the rest of the file was not read"))
    return rows, rejected


def import_csv(engine: Engine, path: Path, settings: Settings) -> ImportReport:
    rows, rejected = read_rows(Path(path), settings)
    report = ImportReport(rejected=rejected)
    with engine.begin() as conn:
        for email, name, sections, _where in rows.values():
            found = store.get(conn, email=email)
            if found:
                conn.execute(subscribers_table.update().where(subscribers_table.c.id == found.id)
                             .values(name=name, sections=list(sections), updated_at=utcnow()))
                report.updated += 1
            else:
                store.insert(conn, email, name, sections)
                report.imported += 1
    return report


def export_csv(engine: Engine, out) -> int:
    """Write every subscriber in the import format; return how many."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    people = store.list_all(engine)
    for s in people:
        writer.writerow([s.email, s.name, ";".join(s.sections)])
    return len(people)
