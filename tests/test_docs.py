"""The README is true: its commands and options exist, and its marked examples run.

- Every `digest` command (introspected from the Typer app) appears in README.md, and
  every option of each appears on a README line that names that command; the app's own
  options (`--config`) appear somewhere.
- Every fenced block right under a `<!-- run -->` line runs (the rule is written in the
  README's Development section):
  - `toml`: parsed and loaded with digest.config.load_settings, so a `digest.toml`
    example is one the program accepts;
  - `sh`: every line is a `digest` command; `console`: every `$ ` line is, and the lines
    after it are its exact output.  They run in document order in one scratch folder
    (its own store; `content/2026-11-25/`, `extra-story.md` and `people.csv` from
    sample/), with the installed `digest`, and must exit 0.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from digest.cli import app
from digest.config import load_settings
from tests.conftest import REPO, SAMPLE, digest_command
from tests.stores import store_url

README = REPO / "README.md"
MARK = "<!-- run -->"


@dataclass
class Block:
    lang: str
    line: int  # of the opening fence, 1-based
    body: str


def readme_blocks(text: str) -> tuple[list[Block], list[Block]]:
    """(every fenced block, the ones right under a MARK line)."""
    lines = text.splitlines()
    every, marked = [], []
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        block = Block(fence.group(1), i + 1, "\n".join(lines[i + 1:end]) + "\n")
        every.append(block)
        if i > 0 and lines[i - 1].strip() == MARK:
            marked.append(block)
        i = end + 1
    return every, marked


EVERY, MARKED = readme_blocks(README.read_text(encoding="utf-8"))


def commands(cmd, path=()):
    """(('articles', 'import'), click command), ... for every leaf command of the app."""
    subs = getattr(cmd, "commands", None)
    if subs is None:
        yield path, cmd
        return
    for name, sub in subs.items():
        yield from commands(sub, (*path, name))


ROOT = typer.main.get_command(app)
COMMANDS = list(commands(ROOT))


def long_options(cmd) -> list[str]:
    return [o for p in cmd.params if p.param_type_name == "option" for o in p.opts if o.startswith("--")]


def mentions(text: str, word: str) -> bool:
    return re.search(re.escape(word) + r"(?![\w-])", text) is not None


# -- commands and options ------------------------------------------------------------------------

def test_the_app_has_the_commands_this_test_expects():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"send", "preview", "status", "serve", "articles import", "subscribers add", "db upgrade"} <= names


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_and_its_options_are_in_the_readme(path, cmd):
    readme = README.read_text(encoding="utf-8")
    name = "digest " + " ".join(path)
    lines = [line for line in readme.splitlines() if mentions(line, name)]
    assert lines, f"README.md never mentions `{name}`"
    near = "\n".join(lines)
    missing = [o for o in long_options(cmd) if not mentions(near, o)]
    assert not missing, f"no README line naming `{name}` shows {', '.join(missing)}"


def test_the_apps_own_options_are_in_the_readme():
    readme = README.read_text(encoding="utf-8")
    missing = [o for o in long_options(ROOT) if not mentions(readme, o)]
    assert not missing, f"README.md never shows {', '.join(missing)}"


# -- marked blocks -------------------------------------------------------------------------------

def test_the_examples_meant_to_run_are_marked():
    langs = [b.lang for b in MARKED]
    assert langs.count("toml") >= 1 and langs.count("sh") >= 4 and langs.count("console") >= 1, langs
    assert all(b.lang in ("toml", "sh", "console") for b in MARKED), langs
    # Every toml block is a settings example: all of them are marked.
    assert [b.line for b in EVERY if b.lang == "toml"] == [b.line for b in MARKED if b.lang == "toml"]


@pytest.mark.parametrize("block", [b for b in MARKED if b.lang == "toml"], ids=lambda b: f"README.md:{b.line}")
def test_a_marked_toml_block_is_a_valid_digest_toml(block, tmp_path):
    tomllib.loads(block.body)  # a syntax error is reported by tomllib itself, with its line
    path = tmp_path / "digest.toml"
    path.write_text(block.body, encoding="utf-8")
    settings = load_settings(path, env={})  # ConfigError (the message a user would get) fails the test
    assert settings.source == str(path)


def shell_steps(block: Block) -> list[tuple[int, list[str], str | None]]:
    """(README line, argv, expected output or None) for each command of an sh/console block."""
    steps: list[tuple[int, list[str], str | None]] = []
    lines = block.body.splitlines()
    i = 0
    while i < len(lines):
        number, line = block.line + 1 + i, lines[i]
        i += 1
        if block.lang == "console":
            if not line.startswith("$ "):
                raise AssertionError(f"README.md:{number}: output with no `$ ` command before it")
            line = line[2:]
        while line.rstrip().endswith("\\") and i < len(lines):
            line = line.rstrip()[:-1] + " " + lines[i]
            i += 1
        argv = shlex.split(line, comments=True)
        if not argv:
            continue
        assert argv[0] == "digest", f"README.md:{number}: a marked block runs only digest commands: {line!r}"
        expected = None
        if block.lang == "console":
            output = []
            while i < len(lines) and not lines[i].startswith("$ "):
                output.append(lines[i])
                i += 1
            expected = "\n".join(output).strip()
        steps.append((number, argv, expected))
    return steps


def scratch_folder(folder: Path) -> None:
    """What the examples name: a day's stories, one more story, a CSV of subscribers."""
    shutil.copytree(SAMPLE / "articles" / "2026-11-25", folder / "content" / "2026-11-25")
    shutil.copy(sorted((SAMPLE / "articles" / "2026-11-24").glob("*.md"))[0], folder / "extra-story.md")
    shutil.copy(SAMPLE / "subscribers.csv", folder / "people.csv")


def test_the_marked_shell_examples_run_in_order_and_exit_0(tmp_path):
    scratch_folder(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "DIGEST_DATABASE_URL": store_url(tmp_path / "digest.db")}
    ran = 0
    for block in (b for b in MARKED if b.lang in ("sh", "console")):
        for number, argv, expected in shell_steps(block):
            done = subprocess.run([digest_command(), *argv[1:]], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120)
            where = f"README.md:{number}: {shlex.join(argv)}"
            assert done.returncode == 0, f"{where} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
            assert "Traceback" not in done.stderr, f"{where}\n{done.stderr}"
            if expected is not None:
                assert done.stdout.strip() == expected, f"{where}: the README shows another output"
            ran += 1
    assert ran >= 10
