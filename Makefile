# Marquee: two commands on a fresh machine -> `make demo` and `make test`.
# Every target runs the set-up it needs (idempotent: a second run skips what is done).

SHELL := /bin/bash
PY := .venv/bin/python
NAME ?=

.PHONY: help setup up down status demo test test-unit bench screenshot lint lock clean

help:
	@echo "make demo    start Kafka + Postgres, ensure topics, replay MovieLens-100k, print a summary"
	@echo "make test    run the whole test suite (starts a private Kafka + Postgres)"
	@echo "make setup   install system packages (as root), .venv, Kafka jars, MovieLens data"
	@echo "make up | down | status   the native stack"
	@echo "make bench [NAME=...]     benchmarks -> docs/benchmarks.md"
	@echo "make lint    ruff"

setup:
	@deploy/setup.sh

up: setup
	@deploy/stack.sh up

down:
	@deploy/stack.sh down

status:
	@deploy/stack.sh status

demo: up
	@$(PY) -m shared.cli.main demo

test: setup
	@$(PY) -m pytest

test-unit: setup
	@$(PY) -m pytest -m "not integration"

bench: up
	@$(PY) -m benchmarks $(NAME)

# Refresh docs/dashboard.png (the README's) from the browser test.
screenshot: setup
	@MARQUEE_UPDATE_SCREENSHOT=1 $(PY) -m pytest tests/integration/dashboard/test_browser.py

lint: setup
	@$(PY) -m ruff check shared services tests benchmarks
	@$(PY) -m ruff format --check shared services tests benchmarks

# Refresh the pinned versions after changing dependencies in pyproject.toml.
lock: setup
	@$(PY) -m pip freeze --exclude-editable | grep -v '^marquee' > requirements.lock
	@echo "requirements.lock updated"

clean: down
	rm -rf .run
