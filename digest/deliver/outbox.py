"""The outbox transport: one .eml file per recipient, nothing sent (dry runs, previews)."""

from __future__ import annotations

import re
from pathlib import Path

from digest.config import Settings
from digest.deliver.transport import Batch, Outcome
from digest.message import build_message
from digest.render import personalize


class OutboxTransport:
    name = "outbox"

    def __init__(self, folder: Path, settings: Settings):
        self.folder = Path(folder)
        self.settings = settings
        self.written: list[Path] = []
        self._cleared = False

    def clear(self) -> None:
        """Remove the .eml files of an earlier run, so the folder holds exactly this run's."""
        if self.folder.is_dir():
            for old in self.folder.glob("*.eml"):
                old.unlink()
        self._cleared = True

    def deliver(self, batch: Batch) -> list[Outcome]:
        if not self._cleared:
            self.clear()
        self.folder.mkdir(parents=True, exist_ok=True)
        outcomes = []
        for r in batch.recipients:
            msg = build_message(personalize(batch.rendered, r.substitutions), r.email, r.name,
                                r.headers, self.settings)
            path = self.folder / f"{safe_name(r.email)}.eml"
            path.write_bytes(msg.as_bytes())
            self.written.append(path)
            outcomes.append(Outcome(r, "sent", message_id=msg["Message-ID"]))
        return outcomes


def safe_name(email: str) -> str:
    """A file name from an address: lower-cased, only characters safe on every filesystem."""
    return re.sub(r"[^a-z0-9@._+-]", "_", email.lower())[:200]
