"""ImportReport: what one import did, for articles and subscribers alike."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ImportReport:
    imported: int = 0
    updated: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (where, why): not imported
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (where, what): imported, worth a look
    interrupted: str | None = None  # the import stopped part-way: what was saved
    # Feeds: items found as stored (neither imported nor updated), and what each feed did
    # ("not modified") — the line gains ", unchanged N" whenever a feed was read.
    unchanged: int = 0
    counts_unchanged: bool = False
    notes: list[tuple[str, str]] = field(default_factory=list)  # (where, what): neither wrong nor a warning

    def line(self) -> str:
        line = f"imported {self.imported}, updated {self.updated}, rejected {len(self.rejected)}"
        return line + (f", unchanged {self.unchanged}" if self.counts_unchanged else "")
