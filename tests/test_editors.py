"""Editors' accounts (digest/editors.py, `digest editors add|list|remove`): argon2id hashes,
the minimum length, the dummy hash for unknown addresses, lock-out after repeated failures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from digest import editors
from digest.editors import EditorError, SignInError
from digest.store import editors as editors_table
from digest.store import open_store, utcnow

PASSWORD = "correct horse battery staple"


def stored(engine, email: str):
    with engine.connect() as conn:
        return conn.execute(select(editors_table).where(editors_table.c.email_key == email.lower())).first()


def test_an_account_keeps_an_argon2id_hash_never_the_password(engine):
    added = editors.add(engine, "Sam@News.Example.COM", PASSWORD)
    assert added.email == "Sam@news.example.com"
    row = stored(engine, "sam@news.example.com")
    assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash
    assert editors.sign_in(engine, "SAM@news.example.com", PASSWORD).id == added.id
    assert [e.email for e in editors.list_all(engine)] == ["Sam@news.example.com"]


def test_bad_addresses_duplicates_and_short_passwords_are_refused_clearly(engine):
    with pytest.raises(EditorError, match="'sam' is not a valid email address"):
        editors.add(engine, "sam", PASSWORD)
    with pytest.raises(EditorError, match="too short: use at least 12 characters"):
        editors.add(engine, "sam@example.com", "short")
    editors.add(engine, "sam@example.com", PASSWORD)
    with pytest.raises(EditorError, match="SAM@example.com is already an editor"):
        editors.add(engine, "SAM@example.com", PASSWORD)
    with pytest.raises(EditorError, match="nobody@example.com is not an editor"):
        editors.remove(engine, "nobody@example.com")
    assert editors.remove(engine, "Sam@Example.com").email == "sam@example.com"
    assert editors.list_all(engine) == []


def test_a_wrong_password_and_an_unknown_address_get_the_same_answer(engine, monkeypatch):
    editors.add(engine, "sam@example.com", PASSWORD)
    verified = []
    real = editors._verify
    monkeypatch.setattr(editors, "_verify", lambda h, p: verified.append(h) or real(h, p))
    answers = []
    for email, password in (("sam@example.com", "wrong password here"), ("nobody@example.com", PASSWORD)):
        with pytest.raises(SignInError) as refused:
            editors.sign_in(engine, email, password)
        answers.append(str(refused.value))
    assert answers[0] == answers[1] == editors.WRONG
    # The unknown address costs one argon2 verification too (against the dummy hash): no timing oracle.
    assert len(verified) == 2 and all(h.startswith("$argon2id$") for h in verified)
    assert verified[1] == editors._dummy_hash()


def test_five_failures_lock_the_account_for_15_minutes_even_with_the_right_password(engine):
    editors.add(engine, "sam@example.com", PASSWORD)
    now = utcnow()
    for _ in range(editors.MAX_FAILURES - 1):
        with pytest.raises(SignInError) as refused:
            editors.sign_in(engine, "sam@example.com", "wrong password here", now=now)
        assert refused.value.locked_until is None
    with pytest.raises(SignInError, match="locked for 15 more minutes") as refused:
        editors.sign_in(engine, "sam@example.com", "wrong password here", now=now)
    assert refused.value.locked_until == now + timedelta(minutes=15)
    with pytest.raises(SignInError, match="locked"):
        editors.sign_in(engine, "sam@example.com", PASSWORD, now=now + timedelta(minutes=14))
    # Once the lock has run out, the right password works and the count starts again.
    later = now + timedelta(minutes=16)
    assert editors.sign_in(engine, "sam@example.com", PASSWORD, now=later).last_signin_at == later
    row = stored(engine, "sam@example.com")
    assert (row.failed_signins, row.locked_until) == (0, None)


def test_a_lock_that_ran_out_starts_the_count_again(engine):
    editors.add(engine, "sam@example.com", PASSWORD)
    now = utcnow()
    with engine.begin() as conn:  # five failures a while ago: locked, and the lock ran out
        conn.execute(update(editors_table).values(failed_signins=5, locked_until=now - timedelta(minutes=1)))
    with pytest.raises(SignInError) as refused:
        editors.sign_in(engine, "sam@example.com", "wrong password here", now=now)
    assert refused.value.locked_until is None
    assert stored(engine, "sam@example.com").failed_signins == 1


def test_a_sign_in_rehashes_a_password_hashed_with_other_parameters(engine):
    editors.add(engine, "sam@example.com", PASSWORD)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with engine.begin() as conn:
        conn.execute(update(editors_table).values(password_hash=weak))
    editors.sign_in(engine, "sam@example.com", PASSWORD)
    rehashed = stored(engine, "sam@example.com").password_hash
    assert rehashed != weak and not PasswordHasher().check_needs_rehash(rehashed)
    assert editors.sign_in(engine, "sam@example.com", PASSWORD)


def test_cli_add_reads_the_password_from_stdin_and_lists_and_removes(cli, database_url):
    added = cli("editors", "add", "sam@example.com", input=f"{PASSWORD}\n")
    assert added.exit_code == 0 and added.stdout == "added editor sam@example.com\n"
    assert PASSWORD not in added.stdout + added.stderr
    listed = cli("editors", "list")
    assert listed.stdout.split()[:3] == ["sam@example.com", "never", "signed"] and "1 editor(s)" in listed.stderr
    duplicate = cli("editors", "add", "SAM@example.com", input=f"{PASSWORD}\n")
    assert duplicate.exit_code == 1 and "SAM@example.com is already an editor" in duplicate.stderr
    short = cli("editors", "add", "jo@example.com", input="short\n")
    assert short.exit_code == 1 and "too short" in short.stderr
    bad = cli("editors", "add", "not-an-address", input=f"{PASSWORD}\n")
    assert bad.exit_code == 2 and "'not-an-address' is not a valid email address" in bad.stderr
    none = cli("editors", "add", "jo@example.com", input="")
    assert none.exit_code == 2 and "no password" in none.stderr
    unknown = cli("editors", "remove", "jo@example.com")
    assert unknown.exit_code == 1 and "jo@example.com is not an editor" in unknown.stderr
    assert cli("editors", "remove", "sam@example.com").stdout == "removed editor sam@example.com\n"
    assert cli("editors", "list").stdout == ""


def test_the_installed_command_takes_a_piped_password(run_digest):
    done = run_digest("editors", "add", "sam@example.com", input=f"{PASSWORD}\n")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert run_digest("editors", "list").stdout.startswith("sam@example.com")


def test_two_servers_count_failures_together(engine, database_url):
    """Each failure is one conditional UPDATE of the shared row: two processes' failures
    add up, and the fifth of them, wherever it happens, locks the account for both."""
    other = open_store(database_url)
    editors.add(engine, "sam@example.com", PASSWORD)
    now = utcnow()
    for i in range(editors.MAX_FAILURES):
        with pytest.raises(SignInError) as refused:
            editors.sign_in(engine if i % 2 else other, "sam@example.com", "wrong password here", now=now)
    assert refused.value.locked_until == now + editors.LOCKED_FOR
    for server in (engine, other):
        with pytest.raises(SignInError, match="locked"):
            editors.sign_in(server, "sam@example.com", PASSWORD, now=now)
    other.dispose()
