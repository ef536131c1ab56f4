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

    def line(self) -> str:
        return f"imported {self.imported}, updated {self.updated}, rejected {len(self.rejected)}"
