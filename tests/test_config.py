from pathlib import Path

import pytest

from digest.config import SECTIONS, ConfigError, load_settings


def test_defaults_work_with_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.sections == SECTIONS and len(SECTIONS) == 13
    assert s.per_section == 3 and s.timezone == "UTC" and s.default_sections == SECTIONS
    assert s.database_url == "sqlite:///digest.db" and s.sendgrid_timeout == 30.0
    assert s.name and "@" in s.from_email


def test_file_then_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("digest.toml").write_text(
        'name = "Morning Brief"\nper_section = 2\ntimezone = "Europe/London"\n'
        'default_sections = ["tech", "world"]\nfrom_email = "file@example.com"\n'
        '[sendgrid]\nhost = "https://api.eu.sendgrid.com/"\ntimeout = 12\ncategories = ["a"]\nasm_group_id = 7\n')
    s = load_settings(env={"DIGEST_FROM_EMAIL": "env@example.com", "SENDGRID_TIMEOUT": "5"})
    assert s.name == "Morning Brief" and s.per_section == 2 and s.timezone == "Europe/London"
    assert s.default_sections == ("world", "tech")  # canonical order
    assert s.from_email == "env@example.com"  # environment wins over the file
    assert s.sendgrid_host == "https://api.eu.sendgrid.com" and s.sendgrid_timeout == 5.0
    assert s.sendgrid_categories == ("a",) and s.sendgrid_asm_group_id == 7


def test_config_option_and_env_var(tmp_path):
    cfg = tmp_path / "other.toml"
    cfg.write_text('name = "Other"\n')
    assert load_settings(cfg, env={}).name == "Other"
    assert load_settings(env={"DIGEST_CONFIG": str(cfg)}).name == "Other"


@pytest.mark.parametrize("text, words", [
    ("name = ", "not valid TOML"),
    ('default_sections = ["tech", "weather"]', "'weather'"),
    ('sections = []', "sections"),
    ("per_section = 0", "per_section"),
    ('timezone = "Mars/Olympus"', "Mars/Olympus"),
    ("colour = 1", "unknown setting 'colour'"),
    ('secret_key = "x"', "environment"),
    ('base_url = "ftp://x"', "base_url"),
    ('base_url = "https://x.example/digest?x=1"', "must not have a query"),
    ("[sendgrid]\ntimeout = -1", "timeout"),
    ("[sendgrid]\ntimeout = true", "timeout"),
    ('[sendgrid]\ncategories = ["daily", "daily"]', "'daily' twice"),
    ("[sendgrid]\nasm_group_id = 12345678901234567890", "asm_group_id"),
    ("[sendgrid]\nasm_group_id = 2147483648", "asm_group_id"),
])
def test_bad_config_names_the_problem(tmp_path, text, words):
    cfg = tmp_path / "digest.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, env={})
    assert words in str(e.value) and str(cfg) in str(e.value)


def test_missing_named_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_bad_config_exits_2_without_traceback(cli, workdir):
    (workdir / "digest.toml").write_text('default_sections = ["weather"]\n')
    result = cli("subscribers", "list")
    assert result.exit_code == 2
    assert "weather" in result.stderr and "Traceback" not in result.stderr


def test_bad_environment_value_exits_2(cli):
    result = cli("send", "--dry-run", env={"SENDGRID_TIMEOUT": "soon"})
    assert result.exit_code == 2 and "SENDGRID_TIMEOUT" in result.stderr


def test_errors_name_the_environment_variable():
    with pytest.raises(ConfigError, match="environment variable SENDGRID_API_HOST"):
        load_settings(env={"SENDGRID_API_HOST": "notaurl"})
    with pytest.raises(ConfigError, match="environment variable DIGEST_FROM_EMAIL"):
        load_settings(env={"DIGEST_FROM_EMAIL": "a@"})


def test_sections_may_only_be_the_sites(tmp_path):
    cfg = tmp_path / "digest.toml"
    cfg.write_text('sections = ["world", "weather"]\n')
    with pytest.raises(ConfigError, match="'weather'"):
        load_settings(cfg, env={})
    cfg.write_text('sections = ["tech", "world"]\n')
    assert load_settings(cfg, env={}).sections == ("tech", "world")


def test_database_password_is_not_echoed(cli):
    result = cli("subscribers", "list", env={"DIGEST_DATABASE_URL": "nosuchdb://root:hunter2@localhost/db"})
    assert result.exit_code == 2 and "hunter2" not in result.stderr
