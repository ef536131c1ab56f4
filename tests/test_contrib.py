"""The README's cron entry and contrib/daily-send, as a new user would install them.

The cron block is read out of README.md and checked with cron's own rules (five time
fields in range, a user field in /etc/cron.d files, no line continuation: cron has
none), then its command is run the way cron runs it (`/bin/sh -c`, cron's bare
environment), against a temp site with today's stories and the SendGrid stand-in.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import REPO, SECRET, write_article
from tests.fake_sendgrid import FakeSendGrid
from tests.stores import store_url

# minute, hour, day of month, month, day of week (0-7: 0 and 7 are Sunday)
RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
NAMES = {3: "jan feb mar apr may jun jul aug sep oct nov dec", 4: "sun mon tue wed thu fri sat"}


def readme_block(language: str, holding: str = "") -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    blocks = [b for b in blocks if holding in b]
    assert len(blocks) == 1, f"expected one ```{language} block holding {holding!r} in README.md"
    return blocks[0]


def field_ok(field: str, index: int) -> bool:
    low, high = RANGES[index]
    names = NAMES.get(index, "").split()
    for part in field.split(","):
        part, _, step = part.partition("/")
        if step and not (step.isdigit() and int(step) > 0):
            return False
        if part == "*":
            continue
        bounds = part.split("-")
        if len(bounds) > 2:
            return False
        for b in bounds:
            if b.lower() in names and not step:
                continue
            if not (b.isdigit() and low <= int(b) <= high):
                return False
    return True


def cron_jobs(text: str) -> list[tuple[list[str], str, str]]:
    """(time fields, user, command) of each job line of an /etc/cron.d file."""
    jobs = []
    for line in text.splitlines():
        assert not line.rstrip().endswith("\\"), f"cron has no line continuation: {line!r}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", line):
            continue  # an environment setting, such as MAILTO
        parts = line.split(None, 6)
        assert len(parts) == 7, f"a job line needs five time fields, a user and a command: {line!r}"
        jobs.append((parts[:5], parts[5], parts[6]))
    return jobs


def test_the_cron_rules_of_this_test_refuse_what_cron_refuses():
    assert field_ok("30", 0) and field_ok("*/5", 0) and field_ok("1-5", 4) and field_ok("mon", 4)
    assert not field_ok("60", 0) and not field_ok("*/0", 0) and not field_ok("32", 2) and not field_ok("x", 1)
    with pytest.raises(AssertionError, match="line continuation"):
        cron_jobs("30 6 * * * digest cd /srv \\\n  && digest send\n")
    with pytest.raises(AssertionError, match="five time fields"):
        cron_jobs("30 6 * * digest /bin/true\n")


def test_the_readme_cron_entry_is_valid_and_calls_the_wrapper():
    jobs = cron_jobs(readme_block("cron"))
    assert len(jobs) == 1
    fields, user, command = jobs[0]
    assert all(field_ok(f, i) for i, f in enumerate(fields)), fields
    assert user == "digest"
    assert command.split()[0] == "/srv/digest/contrib/daily-send"


@pytest.fixture
def site(tmp_path):
    """A site folder with today's stories in content/, and its environment file."""
    today = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    write_article(tmp_path / "content", "lead-story", featured=True, sections=["world"], published=today)
    write_article(tmp_path / "content", "tech-story", section="tech", published=today)
    (tmp_path / "people.csv").write_text("email,name,sections\nann@example.com,Ann,world\nbo@example.com,Bo,tech\n")
    digest = Path(sys.executable).parent / "digest"
    env = {"PATH": "/usr/bin:/bin", "DIGEST_DATABASE_URL": store_url(tmp_path / "digest.db")}
    done = subprocess.run([digest, "subscribers", "import", "people.csv"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return tmp_path, digest


def run_as_cron(command: str, site_dir: Path, env_file: Path) -> subprocess.CompletedProcess:
    """The README's command, with its paths pointed at this checkout and the temp site,
    run as cron runs it: /bin/sh -c, with cron's minimal environment."""
    command = command.replace("/srv/digest", str(REPO)).replace("/etc/news-digest.env", str(env_file))
    cron_env = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "HOME": str(site_dir), "LOGNAME": "digest"}
    return subprocess.run(["/bin/sh", "-c", command], env=cron_env, capture_output=True, text=True, timeout=120)


def write_env(path: Path, site_dir: Path, digest: Path, sg: FakeSendGrid) -> Path:
    """The README's example environment file, with this test's values for its placeholders
    (and the stand-in's host, the test store and the venv's command added)."""
    example = readme_block("sh", "/etc/news-digest.env")
    mine = {"DIGEST_HOME": site_dir, "DIGEST_SECRET_KEY": SECRET, "SENDGRID_API_KEY": sg.api_key}
    lines = []
    for line in example.splitlines():
        key, eq, value = line.partition("=")
        lines.append(f"{key}={mine.get(key, value)}" if eq and not line.startswith("#") else line)
    assert {k for k in mine} <= {line.partition("=")[0] for line in lines}
    # Shell syntax: a PostgreSQL URL's `&` needs quotes, as the README says.
    lines += [f"DIGEST_BIN={digest}", f"SENDGRID_API_HOST={sg.url}",
              f"DIGEST_DATABASE_URL='{store_url(site_dir / 'digest.db')}'"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_cron_command_imports_and_sends(site):
    site_dir, digest = site
    [(_, _, command)] = cron_jobs(readme_block("cron"))
    with FakeSendGrid() as sg:
        env_file = write_env(site_dir / "news-digest.env", site_dir, digest, sg)
        done = run_as_cron(command, site_dir, env_file)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert sorted(d["to"] for d in sg.deliveries) == ["ann@example.com", "bo@example.com"]


def test_a_bad_story_file_is_reported_and_the_day_is_still_sent(site):
    site_dir, digest = site
    (site_dir / "content" / "broken.md").write_text("no front matter here\n", encoding="utf-8")
    [(_, _, command)] = cron_jobs(readme_block("cron"))
    with FakeSendGrid() as sg:
        done = run_as_cron(command, site_dir, write_env(site_dir / "env", site_dir, digest, sg))
        assert done.returncode == 1  # cron mails it: the import rejected a file
        assert "broken.md" in done.stderr and "the import exited 1" in done.stderr
        assert len(sg.deliveries) == 2  # the day went out all the same


def test_a_missing_environment_file_is_exit_2_with_its_name(tmp_path):
    done = subprocess.run([str(REPO / "contrib" / "daily-send"), str(tmp_path / "nope.env")],
                          capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert done.returncode == 2 and "nope.env" in done.stderr


@pytest.mark.parametrize("postal,sent", [(True, 2), (False, 0)], ids=["clean", "a problem"])
def test_digest_check_opt_in_gates_the_send(site, postal, sent):
    """DIGEST_CHECK=1: `digest check` after the import; a problem (here: no postal address)
    stops the day's send with the check's exit status.  The site's one reader follows a
    section with no story today, a problem DIGEST_CHECK_ALLOW accepts."""
    site_dir, digest = site
    if postal:
        (site_dir / "digest.toml").write_text('postal_address = "1 Example Street"\n', encoding="utf-8")
    [(_, _, command)] = cron_jobs(readme_block("cron"))
    with FakeSendGrid() as sg:
        env_file = write_env(site_dir / "env", site_dir, digest, sg)
        env_file.write_text(env_file.read_text(encoding="utf-8") + "DIGEST_CHECK=1\nDIGEST_CHECK_ALLOW=empty-section\n",
                            encoding="utf-8")
        done = run_as_cron(command, site_dir, env_file)
        assert len(sg.deliveries) == sent, done.stdout
    assert done.returncode == (0 if postal else 1), done.stderr
    if not postal:
        assert "problem [no-postal-address]" in done.stdout and "digest check exited 1" in done.stderr
