# The two commands of the README, and a few more for contributors.
#   make book [PROFILE=smoke|quick|full|auto]   execute every notebook, render the book
#   make test                                    run the whole test suite
#   make browser                                 Chromium for the browser test (run by make test)
# Both create .venv on first use (Python 3.10+) and reuse it afterwards.

PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= auto
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: book test test-fast browser lint format clean

$(STAMP): pyproject.toml requirements/constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10 or newer is needed; set PYTHON=python3.x")'
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e ".[book,serve,dev]"
	@touch $(STAMP)

book: $(STAMP)
	$(VPY) tools/build_book.py --profile $(PROFILE)

test: $(STAMP) browser
	$(VPY) -m pytest

test-fast: $(STAMP) browser
	$(VPY) -m pytest -m "not slow"

# tests/test_browser.py drives the upload page in headless Chromium: install Debian's chromium
# and chromium-driver when they are missing and we are root, else say the test will be skipped.
browser:
	@sh tools/ensure_browser.sh

lint: $(STAMP)
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .

format: $(STAMP)
	$(VPY) -m ruff format .
	$(VPY) -m ruff check --fix .

clean:
	rm -rf _build .pytest_cache .ruff_cache
