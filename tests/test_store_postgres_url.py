"""PostgreSQL URLs: every usual spelling reaches psycopg 3; a missing driver names the extra.

No PostgreSQL server is needed: these tests stop before a connection is made.
"""

from __future__ import annotations

import builtins

import pytest

from digest.store import StoreError, normalise_url, open_store


@pytest.mark.parametrize("given, expected", [
    ("postgres://u:p@db.example.com:5432/digest", "postgresql+psycopg://u:p@db.example.com:5432/digest"),
    ("postgresql://u@/digest?host=/tmp/pg", "postgresql+psycopg://u@/digest?host=/tmp/pg"),
    ("postgresql+psycopg://u@h/digest", "postgresql+psycopg://u@h/digest"),
    ("postgresql+psycopg2://u@h/digest", "postgresql+psycopg2://u@h/digest"),  # an explicit driver is kept
    ("sqlite:///digest.db", "sqlite:///digest.db"),
    ("sqlite://", "sqlite://"),
])
def test_normalise_url_points_postgres_spellings_at_psycopg(given, expected):
    assert normalise_url(given) == expected


@pytest.fixture
def no_psycopg(monkeypatch):
    """Imports of psycopg fail, as when the extra is not installed."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "psycopg" or name.startswith("psycopg."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


@pytest.mark.parametrize("url", ["postgres://u:secret@localhost/digest", "postgresql://u:secret@localhost/digest",
                                 "postgresql+psycopg://u:secret@localhost/digest"])
def test_a_missing_driver_names_the_postgres_extra(no_psycopg, url):
    with pytest.raises(StoreError) as raised:
        open_store(url)
    message = str(raised.value)
    assert "install the PostgreSQL extra: pip install 'news-digest[postgres]'" in message
    assert "secret" not in message  # the password is never shown


def test_a_missing_driver_through_the_cli_is_one_line_and_exit_2(cli, no_psycopg):
    result = cli("subscribers", "list", env={"DIGEST_DATABASE_URL": "postgres://u@localhost/digest"})
    assert result.exit_code == 2
    assert "pip install 'news-digest[postgres]'" in result.stderr and "Traceback" not in result.output
