"""The rules the CLI used to decide, each defined once in the library."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from digest.config import ConfigError, Settings, check_day
from digest.deliver.ledger import all_sent
from digest.dispatch import SendOptionsError, check_options
from digest.sending import Summary
from digest.subscribers.store import SubscriberError, check_operator_status
from digest.tokens import Signer, link_signer


def test_all_sent_is_every_row_sent_and_both_exit_statuses_use_it():
    assert all_sent({"pending": 0, "sent": 3, "failed": 0, "unknown": 0})
    assert all_sent({"pending": 0, "sent": 0, "failed": 0, "unknown": 0})  # no rows: nothing left to do
    assert not all_sent({"pending": 0, "sent": 3, "failed": 0, "unknown": 1})
    summary = Summary(date="2026-11-25", mode="send", stories=1, counts={"sent": 2, "pending": 1})
    assert summary.exit_code == 1
    summary.counts = {"sent": 3, "pending": 0}
    assert summary.exit_code == 0


@pytest.mark.parametrize("mode, options, message", [
    ("dry-run", {"retry": "failed"}, "--dry-run cannot be combined with --retry or --sandbox"),
    ("sandbox", {"retry": "unknown"}, "--sandbox cannot be combined with --retry"),
    ("send", {"outbox": "out"}, "--outbox goes with --dry-run (a real send writes no files)"),
    ("sandbox", {"sample": 3}, "--sample goes with --dry-run"),
    ("dry-run", {"refreeze": True}, "--refreeze goes with a real send (a dry run freezes nothing)"),
    ("sandbox", {"workers": 2}, "--workers goes with a real send (a dry run or sandbox run is one process)"),
])
def test_send_options_that_do_not_go_with_the_mode(mode, options, message):
    with pytest.raises(SendOptionsError) as refused:
        check_options(mode, **options)
    assert str(refused.value) == message


def test_send_options_that_go_with_the_mode():
    check_options("dry-run", sample=0, outbox="out")
    check_options("send", retry="unknown", refreeze=True, workers=4)
    check_options("sandbox")


def test_a_real_send_needs_the_key_a_dry_run_says_it_uses_a_throwaway_one():
    keyless = Settings()
    with pytest.raises(ConfigError, match="DIGEST_SECRET_KEY is not set"):
        link_signer(keyless, real=True, notify=print)
    said: list[str] = []
    assert isinstance(link_signer(keyless, real=False, notify=said.append), Signer)
    assert said == ["note: DIGEST_SECRET_KEY is not set; links are signed with a throwaway key and will not work"]
    said.clear()
    link_signer(replace(keyless, secret_key="k"), real=True, notify=said.append)
    assert said == []


def test_an_operator_may_set_a_delivery_choice_only():
    check_operator_status(None)
    check_operator_status("active")
    check_operator_status("paused")
    for status in ("unsubscribed", "bounced", "complained", "pending", "nonsense"):
        with pytest.raises(SubscriberError, match="can set active or paused"):
            check_operator_status(status)


def test_one_default_base_url():
    settings = Settings()
    assert settings.links_base == "http://127.0.0.1:8000"
    assert settings.served_at("127.0.0.1", 8000).base_url == settings.links_base
    assert settings.served_at("0.0.0.0", 9000).base_url == "http://0.0.0.0:9000"
    configured = replace(settings, base_url="https://news.example.com/digest")
    assert configured.served_at("0.0.0.0", 9000) is configured


def test_edition_days():
    assert check_day(date(2026, 11, 25)) == date(2026, 11, 25)
    with pytest.raises(ConfigError, match="between 1970-01-01 and 9998-12-31"):
        check_day(date(9999, 1, 1))
