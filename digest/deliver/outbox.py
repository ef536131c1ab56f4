"""The outbox transport: one .eml file per recipient, nothing sent (dry runs, sign-ups)."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from pathlib import Path

from digest.config import Settings
from digest.deliver.transport import Batch, Outcome
from digest.message import build_message
from digest.render import personalize

MARKER = ".news-digest-outbox"  # lists the files this outbox wrote
SEND_AT_HEADER = "X-Digest-Send-At"  # the reader's delivery time (UTC) a real send would ask SendGrid for


class OutboxTransport:
    """`keep`: every email is kept, under a name that starts with the time it was written
    (sign-up emails: one address may get several); without it, a run replaces the files
    of our earlier run in the folder (a dry run's outbox holds one edition)."""

    def __init__(self, folder: Path, settings: Settings, keep: bool = False):
        self.folder = Path(folder)
        self.settings = settings
        self.keep = keep
        self._prepared = False

    def prepare(self) -> None:
        """Create the folder; remove the .eml files of *our* earlier run there (and no others).

        A marker file says the folder is an outbox we made, so pointing --outbox at a
        mail folder never deletes anybody's messages.  A `keep` outbox removes nothing
        and lists nothing.
        """
        if self.keep:
            self.folder.mkdir(parents=True, exist_ok=True)
            return
        marker = self.folder / MARKER
        if marker.is_file():
            for name in marker.read_text(encoding="utf-8", errors="replace").split():
                # The marker is only a list someone could edit: delete nothing but plain
                # .eml names directly in this folder (never `../x` or an absolute path).
                if is_our_file_name(name):
                    (self.folder / name).unlink(missing_ok=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        marker.write_text("", encoding="utf-8")
        self._prepared = True

    def deliver(self, batch: Batch) -> list[Outcome]:
        if not self._prepared or self.keep:  # a kept outbox's folder may have been removed meanwhile
            self.prepare()
        outcomes, names = [], []
        # When the digest would reach the inbox (SendGrid's send_at), for whoever reads the outbox.
        due = {SEND_AT_HEADER: f"{batch.send_at:%Y-%m-%dT%H:%M:%S}Z"} if batch.send_at else {}
        for r in batch.recipients:
            msg = build_message(personalize(batch.rendered, r.substitutions), r.email, r.name,
                                {**batch.headers, **r.headers, **due}, self.settings)
            path = self.folder / self._file_name(r.email)
            path.write_bytes(msg.as_bytes())
            names.append(path.name)
            outcomes.append(Outcome(r, "sent", message_id=msg["Message-ID"]))
        if not self.keep:
            with (self.folder / MARKER).open("a", encoding="utf-8") as marker:  # once per batch
                marker.write("".join(n + "\n" for n in names))
        return outcomes

    def _file_name(self, email: str) -> str:
        if self.keep:
            return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{file_stem(email)}.eml"
        return f"{file_stem(email)}.eml"


def safe_name(email: str) -> str:
    """A file name from an address: lower-cased, only characters safe on every filesystem."""
    return re.sub(r"[^a-z0-9@._+-]", "_", email.lower())[:200]


def file_stem(email: str) -> str:
    """safe_name, plus `~` and a short hash of the address when safe_name had to change it.

    Why: `a_b@x.com`, `a=b@x.com` and `a#b@x.com` all map to `a_b@x.com`, and one file
    would overwrite the other.  The hash keeps them apart; `~` is a character safe_name
    never writes, so a hashed name cannot meet the plain name of another address.
    """
    key = email.lower()
    name = safe_name(email)
    if name == key:
        return name
    return f"{name}~{hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


def is_our_file_name(name: str) -> bool:
    """A name this outbox could have written: `<something>.eml`, no folder part, not hidden."""
    return (name.endswith(".eml") and not name.startswith(".")
            and "/" not in name and "\\" not in name and "\0" not in name)
