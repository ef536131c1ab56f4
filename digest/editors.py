"""Editors: the accounts that may sign in to the desk (`digest editors add|list|remove`).

Passwords are kept as argon2id hashes (argon2-cffi's PasswordHasher: its own salt and
parameters in each hash), rehashed at the next sign-in when the parameters change.  A
sign-in with an unknown address is checked against a dummy hash, so its answer takes as
long as a wrong password's and does not tell which addresses have accounts.  After
MAX_FAILURES wrong passwords in a row an account is locked for LOCKED_FOR; failures and
the lock are single conditional UPDATEs, so several `digest serve` processes agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import case, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from digest import addresses
from digest.store import editors, utcnow

MIN_PASSWORD = 12      # characters; length is what makes a password hard to guess
MAX_PASSWORD = 1024    # hashing a megabyte on every attempt would be a denial of service
MAX_FAILURES = 5       # wrong passwords in a row before the account is locked
LOCKED_FOR = timedelta(minutes=15)

_hasher = PasswordHasher()  # argon2id, the library's current recommended parameters


class EditorError(ValueError):
    """An account operation that cannot be done; the message says why."""


class SignInError(Exception):
    """A refused sign-in.  `locked_until` is set when the account is locked (too many
    failures); otherwise the address or the password is wrong, and which is not said."""

    def __init__(self, message: str, locked_until: datetime | None = None):
        super().__init__(message)
        self.locked_until = locked_until


WRONG = "That address and password do not match an editor's account."


@dataclass(frozen=True)
class Editor:
    id: int
    email: str
    created_at: datetime
    last_signin_at: datetime | None = None
    locked_until: datetime | None = None
    session_epoch: int = 0  # what the editor's live desk sessions carry (end_sessions raises it)


def _editor(row) -> Editor:
    return Editor(row.id, row.email, row.created_at, row.last_signin_at, row.locked_until, row.session_epoch)


def normalize_address(raw: str) -> str:
    """A syntactically valid address (domain lower-cased), or EditorError saying why not."""
    try:
        return addresses.normalize(raw, "the editor's address")
    except addresses.AddressError as e:
        raise EditorError(str(e)) from None


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise EditorError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise EditorError(f"the password is too long: use at most {MAX_PASSWORD} characters")


def add(engine: Engine, email: str, password: str) -> Editor:
    """A new editor's account; EditorError for a bad address, a short password, a duplicate."""
    address = normalize_address(email)
    check_password(password)
    now = utcnow()
    try:
        with engine.begin() as conn:
            key = conn.execute(editors.insert().values(
                email=address, email_key=address.lower(), password_hash=_hasher.hash(password),
                failed_signins=0, created_at=now)).inserted_primary_key
    except IntegrityError:
        raise EditorError(f"{address} is already an editor") from None
    assert key is not None
    return Editor(key[0], address, now)


def get(engine: Engine, id: int) -> Editor | None:
    with engine.connect() as conn:
        row = conn.execute(select(editors).where(editors.c.id == id)).first()
    return _editor(row) if row else None


def list_all(engine: Engine) -> list[Editor]:
    with engine.connect() as conn:
        return [_editor(r) for r in conn.execute(select(editors).order_by(editors.c.email_key))]


def remove(engine: Engine, email: str) -> Editor:
    """Delete an account (its desk sessions stop working at their next request)."""
    key = _key(email)
    with engine.begin() as conn:
        row = conn.execute(select(editors).where(editors.c.email_key == key)).first()
        if row is None:
            raise EditorError(f"{email.strip()} is not an editor (digest editors list shows them)")
        conn.execute(editors.delete().where(editors.c.id == row.id))
    return _editor(row)


def _key(email: str) -> str:
    try:
        return normalize_address(email).lower()
    except EditorError:
        return (email or "").strip().lower()  # never stored like this: finds nobody


@cache
def _dummy_hash() -> str:
    return _hasher.hash("not any editor's password, only something to compare with")


def sign_in(engine: Engine, email: str, password: str, now: datetime | None = None) -> Editor:
    """The editor whose address and password these are; SignInError if not (or locked)."""
    now = now or utcnow()
    with engine.connect() as conn:
        row = conn.execute(select(editors).where(editors.c.email_key == _key(email))).first()
    if row is None or len(password) > MAX_PASSWORD:
        _verify(_dummy_hash(), password[:MAX_PASSWORD])  # the same work as for a real account
        raise SignInError(WRONG)
    if row.locked_until is not None and row.locked_until > now:
        raise SignInError(_locked(row.locked_until, now), row.locked_until)
    if not _verify(row.password_hash, password):
        locked_until = _count_failure(engine, row.id, now)
        if locked_until is not None:
            raise SignInError(_locked(locked_until, now), locked_until)
        raise SignInError(WRONG)
    with engine.begin() as conn:
        # Only if no other server locked the account meanwhile (a failure there, a moment ago).
        done = conn.execute(update(editors).where(editors.c.id == row.id, _unlocked(now))
                            .values(failed_signins=0, locked_until=None, last_signin_at=now)).rowcount
        if done and _hasher.check_needs_rehash(row.password_hash):
            conn.execute(update(editors).where(editors.c.id == row.id)
                         .values(password_hash=_hasher.hash(password)))
    if not done:
        locked = get(engine, row.id)
        until = locked.locked_until if locked else None
        raise SignInError(_locked(until, now) if until else WRONG, until)
    return Editor(row.id, row.email, row.created_at, now, session_epoch=row.session_epoch)


def end_sessions(engine: Engine, editor_id: int) -> None:
    """Sign the editor out everywhere: every session issued so far stops working."""
    with engine.begin() as conn:
        conn.execute(update(editors).where(editors.c.id == editor_id)
                     .values(session_epoch=editors.c.session_epoch + 1))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _unlocked(now: datetime):
    return (editors.c.locked_until.is_(None)) | (editors.c.locked_until <= now)


def _count_failure(engine: Engine, editor_id: int, now: datetime) -> datetime | None:
    """Count one wrong password, locking the account at the MAX_FAILURES-th; when it locks.

    One conditional UPDATE: two servers counting at once both add one, and the one whose
    count reaches the limit sets the lock.  A lock that ran out starts the count again.
    """
    expired = editors.c.locked_until.is_not(None)  # within _unlocked: a lock that ran out
    count = case((expired, 1), else_=editors.c.failed_signins + 1)
    with engine.begin() as conn:
        conn.execute(update(editors).where(editors.c.id == editor_id, _unlocked(now)).values(
            failed_signins=count,
            locked_until=case((count >= MAX_FAILURES, now + LOCKED_FOR), else_=None)))
        until = conn.execute(select(editors.c.locked_until).where(editors.c.id == editor_id)).scalar()
    return until if until is not None and until > now else None


def _locked(until: datetime, now: datetime) -> str:
    minutes = max(1, -(-int((until - now).total_seconds()) // 60))
    return (f"Too many wrong passwords: this account is locked for {minutes} more "
            f"minute{'s' if minutes != 1 else ''}. Try again later.")
