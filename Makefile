# tokenguard: every target sets itself up (creates .venv and installs) on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install test lint typecheck pytest demo demo-sdk quickstart lab bench soak fuzz clean

help:
	@echo "make demo   - start the local identity lab and walk the managed-identity flow"
	@echo "make demo-sdk - the same walk-through with the official Azure SDKs"
	@echo "make quickstart - the five-token Starlette quick start (no lab, no sockets)"
	@echo "make test   - ruff, mypy --strict, pytest and the docs site"
	@echo "make docs   - build the documentation site into site/ (mkdocs --strict)"
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
	rm -rf $(VENV) .lab .mypy_cache .pytest_cache .ruff_cache .coverage
