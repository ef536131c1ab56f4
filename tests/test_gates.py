"""The lint and type gates fail on planted errors (they are not just installed and green).

Each test runs `make lint-check` (the commands `make lint`, and so `make test`, runs) on
one small planted file instead of the repository: ruff on an unused import, mypy on a
type error, and both on a clean file, so a failure is the planted error's doing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def lint_check(path: Path) -> subprocess.CompletedProcess:
    """`make lint-check` on one file, with the ruff and mypy of the Python running the tests."""
    return subprocess.run(
        ["make", "--no-print-directory", "lint-check", f"LINT_PATHS={path}", f"MYPY_PATHS={path}",
         f"RUFF={sys.executable} -m ruff", f"MYPY={sys.executable} -m mypy"],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )


def plant(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "planted.py"
    path.write_text(source, encoding="utf-8")
    return path


def test_a_clean_file_passes_both_gates(tmp_path):
    done = lint_check(plant(tmp_path, "def double(n: int) -> int:\n    return 2 * n\n"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_unused_import_fails_the_lint_gate(tmp_path):
    done = lint_check(plant(tmp_path, "import os\n\n\ndef double(n: int) -> int:\n    return 2 * n\n"))
    assert done.returncode != 0
    assert "F401" in done.stdout and "planted.py" in done.stdout, done.stdout + done.stderr


def test_a_type_error_fails_the_type_gate(tmp_path):
    done = lint_check(plant(tmp_path, 'def double(n: int) -> int:\n    return 2 * n\n\n\ndouble("two")\n'))
    assert done.returncode != 0
    assert "All checks passed" in done.stdout  # ruff had nothing to say: mypy failed it
    assert 'incompatible type "str"; expected "int"' in done.stdout, done.stdout + done.stderr
