# Countertop: the front door. `make up` runs the whole system locally, `make test` tests it.
# Needs only Python 3.11+ with pip: uv is installed into .tools/ when it is not on PATH.

SHELL := /bin/bash
PYTHON ?= python3
export UV_PYTHON_DOWNLOADS ?= never
export UV_PYTHON ?= $(shell $(PYTHON) -c 'import sys; print(sys.executable)')

UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --frozen

PYTEST_ARGS ?=

.PHONY: help install up down test test-smoke lint fmt bench clean image k8s-generate k8s-check

help:
	@echo "make up      install everything and run the whole system on the embedded servers"
	@echo "make test    install everything and run every test"
	@echo "make lint    ruff and mypy"
	@echo "make fmt     format the code"
	@echo "make bench   run the benchmarks in bench/"
	@echo "make image   build one container image per service (IMAGE_TAG, IMAGE_REGISTRY, SERVICES)"
	@echo "make k8s-check  regenerate-check, render, validate and scan deploy/k8s"
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
	$(RUN) python bench/checkout.py --start
	$(RUN) python bench/outbox_relay.py
	$(RUN) python bench/printing.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache

# --- container images and Kubernetes manifests ---------------------------------------------------

SERVICES ?= identity orders inventory members payments device-gateway
IMAGE_REGISTRY ?= countertop
IMAGE_TAG ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
DOCKER ?= docker

image:
	@for service in $(SERVICES); do \
		echo "building $(IMAGE_REGISTRY)/$$service:$(IMAGE_TAG)"; \
		$(DOCKER) build -f deploy/docker/Dockerfile --build-arg SERVICE=$$service \
			-t $(IMAGE_REGISTRY)/$$service:$(IMAGE_TAG) . || exit 1; \
	done

# Rewrites the parts of deploy/k8s that follow from the code (see deploy/k8s/k8s_manifests).
k8s-generate: install
	cd deploy/k8s && $(abspath $(UV)) run --frozen python -m k8s_manifests

# What `make test` checks of deploy/k8s, plus checkov run from its own environment (it is not a
# project dependency: its pins would downgrade the project's packaging and pytest).
k8s-check: install
	cd deploy/k8s && $(abspath $(UV)) run --frozen python -m k8s_manifests --check
	$(RUN) pytest deploy/k8s/tests $(PYTEST_ARGS)
	@mkdir -p var/k8s
	kubectl kustomize deploy/k8s/overlays/dev > var/k8s/dev.yaml
	kubectl kustomize deploy/k8s/overlays/production > var/k8s/production.yaml
	$(UV) tool run --from 'checkov>=3.2' checkov --config-file deploy/k8s/checkov.yaml \
		-f var/k8s/dev.yaml -f var/k8s/production.yaml
