# news-digest: `make demo` and `make test` work on a fresh clone (they install what they need).
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
DIGEST  := $(abspath $(VENV))/bin/digest
STAMP   := $(VENV)/.installed
DEMO_DATE ?= 2026-11-25
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint lint-check test-sqlite test-postgres bench chromium clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,postgres]'
	touch $(STAMP)

# Browser tests drive Debian's Chromium (Playwright's own browser download is not used).
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# The gates first, then the whole suite twice: on SQLite files, then on a throwaway
# PostgreSQL cluster that scripts/with-postgres starts (installing PostgreSQL with apt-get
# when it is missing) and removes afterwards.  Each pass deselects the other engine's
# tests (-m), never skips them.
test: lint test-sqlite test-postgres

# Lint (ruff: pyflakes, pycodestyle, import order, bugbear) over the repository and type
# checks (mypy) of digest/ and subscribers/; both configured in pyproject.toml.
# lint-check is the gates alone, without the install step; tests/test_gates.py runs it on
# planted errors (LINT_PATHS, MYPY_PATHS) to show that it fails.
RUFF       ?= $(VENV)/bin/ruff
MYPY       ?= $(VENV)/bin/mypy
LINT_PATHS ?= .
MYPY_PATHS ?=
lint: $(STAMP)
	@$(MAKE) --no-print-directory lint-check

lint-check:
	@echo "== lint and type checks =="
	$(RUFF) check $(LINT_PATHS)
	$(MYPY) $(MYPY_PATHS)

test-sqlite: $(STAMP) chromium
	@echo "== tests on SQLite =="
	$(PY) -m pytest -q -m "not postgres_only"

test-postgres: $(STAMP) chromium
	@echo "== tests on PostgreSQL =="
	scripts/with-postgres $(PY) -m pytest -q -m "not sqlite_only"

# The daily send as a dry run on the bundled sample data, in demo/ (its own SQLite file).
demo: $(STAMP)
	rm -rf demo && mkdir demo
	cd demo && $(DIGEST) articles import ../sample/articles
	cd demo && $(DIGEST) subscribers import ../sample/subscribers.csv
	cd demo && $(DIGEST) send --dry-run --date $(DEMO_DATE)
	cd demo && $(DIGEST) preview --date $(DEMO_DATE) --subscriber dev.lab@example.com --format text | head -n 30
	@echo "demo: the emails are in demo/outbox/$(DEMO_DATE)/ (open one with any mail client)"

# The scale benchmark (BENCHMARKS.md): import and send beside the naive pipeline and the
# floor, on SQLite and on a throwaway PostgreSQL, with 1, 2 and 4 sender processes, at
# each size (at 1,000,000 subscribers: about an hour on a 2-core machine).
BENCH_SIZES   ?= 100000 1000000
BENCH_WORKERS ?= 1 2 4
bench: $(STAMP)
	@for n in $(BENCH_SIZES); do \
	  $(PY) -m benchmarks.scale --subscribers $$n --workers $(BENCH_WORKERS) || exit 1; \
	  scripts/with-postgres $(PY) -m benchmarks.scale --postgres --subscribers $$n --workers $(BENCH_WORKERS) || exit 1; \
	done

clean:
	rm -rf demo $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
