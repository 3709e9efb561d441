# Countertop: the front door. `make up` runs the whole system locally, `make test` tests it.
# Needs only Python 3.11+ with pip: uv is installed into .tools/ when it is not on PATH.

SHELL := /bin/bash
PYTHON ?= python3
export UV_PYTHON_DOWNLOADS ?= never
export UV_PYTHON ?= $(shell $(PYTHON) -c 'import sys; print(sys.executable)')

UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --frozen

PYTEST_ARGS ?=

.PHONY: help install up down test test-smoke lint fmt bench clean

help:
	@echo "make up      install everything and run the whole system on the embedded servers"
	@echo "make test    install everything and run every test"
	@echo "make lint    ruff and mypy"
	@echo "make fmt     format the code"
	@echo "make bench   run the benchmarks in bench/"
	@echo "make down    stop a stack left running in the background"
	@echo "make clean   remove the local data (var/) and caches"

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv

install: $(if $(findstring .tools,$(UV)),.tools/bin/uv)
	$(UV) sync --frozen --all-packages

up: install
	$(RUN) python -m countertop_local up

down:
	-$(RUN) python -m countertop_local down

test: install
	$(RUN) pytest $(PYTEST_ARGS)

test-smoke: install
	$(RUN) pytest -m smoke $(PYTEST_ARGS)

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy libs/contracts/src libs/servicekit/src
	$(RUN) python -m contracts.snapshot --check

fmt: install
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

bench: install
	$(RUN) python bench/outbox_relay.py
	$(RUN) python bench/printing.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
