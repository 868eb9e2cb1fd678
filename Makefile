# tokenguard: every target sets itself up (creates .venv and installs) on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install test test-lowest test-browser test-wheel lint typecheck pytest demo demo-sdk quickstart lab bench soak fuzz clean

help:
	@echo "make demo   - start the local identity lab and walk the managed-identity flow"
	@echo "make demo-sdk - the same walk-through with the official Azure SDKs"
	@echo "make quickstart - the five-token Starlette quick start (no lab, no sockets)"
	@echo "make test   - ruff, mypy --strict, pytest and the docs site"
	@echo "make docs   - build the documentation site into site/ (mkdocs --strict)"
	@echo "make test-lowest - pytest with every dependency at its declared floor"
	@echo "make test-browser - sign in from Swagger UI in headless chromium (installs it with apt)"
	@echo "make lab    - run the local identity lab in the foreground"
	@echo "make bench  - benchmark suite (tables in bench/results/)"
	@echo "make soak   - bounded soak test on loopback"
	@echo "make fuzz   - long property-based fuzz run"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The dev dependency group (PEP 735, with the lab group inside it) needs pip 25.1+ for --group.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet -e '.[fastapi,metrics]' --group dev
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench fuzz soak
	$(BIN)/ruff format --check src tests examples bench fuzz soak

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest --cov --cov-branch --cov-report=term --cov-fail-under=95

# The docs site (mkdocs.yml, docs/) into site/: warnings are errors.
.PHONY: docs
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint typecheck pytest docs

# The lowest allowed versions: its own venv, with every direct dependency and extra
# pinned to its declared floor (constraints/lowest.txt) and everything else (pydantic,
# the test tools, uvicorn, the Azure SDKs) at the newest version that fits. pytest only:
# ruff and mypy judge the source, not the dependencies.
# Excluded: tests/test_bench.py. The benchmark races fastapi-azure-auth, whose releases
# that co-install with the floors (5.0.x; later ones need cryptography>=43.0.1) lack the
# http_client_config the bench passes. Everything else runs, the lab tests included.
LOWEST := .venv-lowest
LOWEST_STAMP := $(LOWEST)/.installed

$(LOWEST)/bin/python:
	$(PYTHON) -m venv $(LOWEST)

$(LOWEST_STAMP): pyproject.toml constraints/lowest.txt | $(LOWEST)/bin/python
	$(LOWEST)/bin/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(LOWEST)/bin/python -m pip install --quiet -c constraints/lowest.txt \
		-e '.[fastapi,metrics]' --group dev
	$(LOWEST)/bin/python -m pip check
	touch $(LOWEST_STAMP)

test-lowest: $(LOWEST_STAMP)
	$(LOWEST)/bin/python -m pip freeze --exclude-editable \
		| grep -iE '^(pyjwt|cryptography|httpx|starlette|anyio|fastapi|prometheus.client)=='
	$(LOWEST)/bin/pytest -p no:cacheprovider --ignore=tests/test_bench.py

# Swagger UI sign-in end to end in a real headless chromium (tests/browser/). Debian's
# chromium and chromedriver come from apt when missing (root, as on CI); selenium (the
# browser dependency group) drives /usr/bin/chromedriver and downloads nothing.
test-browser: $(STAMP)
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	fi
	TOKENGUARD_BROWSER_TEST=1 timeout 300 $(BIN)/pytest -p no:cacheprovider tests/browser

demo: $(STAMP)
	$(BIN)/python -m examples.vm_app

demo-sdk: $(STAMP)
	$(BIN)/python -m examples.vm_app_sdk

quickstart: $(STAMP)
	$(BIN)/python -m examples.quickstart

lab: $(STAMP)
	$(BIN)/python -m examples.lab

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	$(BIN)/python -m soak

fuzz: $(STAMP)
	$(BIN)/python -m fuzz

clean:
	rm -rf $(VENV) $(LOWEST) .lab .mypy_cache .pytest_cache .ruff_cache .coverage .wheel-check site

# What a user gets: the wheel, installed by its distribution name in a fresh venv (its
# runtime dependencies only), imports as tokenguard, runs the CLI, and the README's quick
# start type-checks there under mypy --strict.
.PHONY: test-wheel
test-wheel: $(STAMP)
	rm -rf .wheel-check && mkdir -p .wheel-check
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir .wheel-check/dist .
	$(PYTHON) -m venv .wheel-check/venv
	.wheel-check/venv/bin/python -m pip install --quiet .wheel-check/dist/tokenguard_asgi-*.whl mypy
	.wheel-check/venv/bin/tokenguard --version
	.wheel-check/venv/bin/python -c "import tokenguard, importlib.metadata as m; assert m.version('tokenguard-asgi') == tokenguard.__version__"
	$(BIN)/python -c "import re, pathlib; t = pathlib.Path('README.md').read_text(); print(re.search(r'<!-- test: quickstart-starlette -->\n\x60\x60\x60python\n(.*?)\x60\x60\x60', t, re.S)[1])" > .wheel-check/quickstart.py
	.wheel-check/venv/bin/mypy --strict .wheel-check/quickstart.py
