# RelayPACS — `make run` and `make test` set up everything they need on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell command -v python3.11 || command -v $(PYTHON))

# Debian packages the test suite drives as real components.
# prometheus ships promtool (alert rule tests); nginx checks deploy/nginx (`nginx -t`, proxy tests).
TEST_APT_PACKAGES := orthanc orthanc-dicomweb nftables iproute2 prometheus nginx
# chromium: the PWA's browser tests (tests/e2e) drive Debian's build through Playwright.
TEST_APT_PACKAGES += chromium

.PHONY: help install system-deps run migrate test lint types pytest format clean check-deploy resilience
.PHONY: web web-check

help:
	@echo "make run    install what is needed and run RelayPACS on http://127.0.0.1:8080"
	@echo "make test   install what the tests need, then lint, type-check and run the whole suite"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml uv.lock
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen
	@touch $@

system-deps:
	@missing=""; for p in $(TEST_APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The PWA (web/): dependencies exactly as locked, then the production build that `serve` ships.
web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

web: web/node_modules/.installed
	cd web && npm run build

# ESLint (incl. no imports across features), tsc --strict, Vitest (the upload engine).
web-check: web/node_modules/.installed
	cd web && npm run lint && npm run typecheck && npm test

run: install web
	mkdir -p var
	$(BIN)/relaypacs serve

migrate: install
	$(BIN)/relaypacs migrate

lint: install
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

types: install
	$(BIN)/mypy src

# Most tests wait on real processes (servers, Orthanc, S3, workers), so they run 4 at a time even
# on 2 cores. Three runs, each in its own processes:
# - tests/uploads overrides the `settings` fixture (every test on both chunk stores); the shared
#   session `app` must never be built from one folder's settings and used by the other's tests;
# - the browser tests: Playwright's sync API drives its own event loop. They run 2 at a time,
#   a test file per worker (`--dist loadfile`: each worker has its own gateway, Orthanc and
#   Chromium; module fixtures such as test_admin's gateway start once, tests keep their order).
PYTEST_WORKERS ?= 4
pytest: install system-deps web
	$(BIN)/pytest -n $(PYTEST_WORKERS) --ignore=tests/e2e --ignore=tests/uploads --durations=15
	$(BIN)/pytest -n $(PYTEST_WORKERS) tests/uploads --durations=5
	$(BIN)/pytest -n 2 --dist loadfile tests/e2e --durations=5

# Deployment files without Docker (compose schema, nginx -t, promtool, dashboards) and the
# licences of everything that ships (PRD C-BIZ-03).
check-deploy: install system-deps
	$(BIN)/python tools/check_deploy.py
	$(BIN)/python tools/licences.py

test: lint types web-check check-deploy pytest

# Every network-fault scenario of the uploader (root; long): writes var/resilience-report.md.
resilience: install system-deps
	RELAYPACS_RESILIENCE=1 $(BIN)/pytest tests/resilience -p no:cacheprovider -rA

format: install
	$(BIN)/ruff format src tests bench tools
	$(BIN)/ruff check --fix src tests bench tools

.PHONY: bench-uploads
bench-uploads: install  ## chunk ingest vs @tus/server (see bench/README.md); not a test
	cd bench/tus && npm ci --no-audit --no-fund --loglevel=error
	$(BIN)/python -m bench.uploads.bench $(BENCH_ARGS)

.PHONY: bench-analytics
bench-analytics: install  ## summary and trends on 100,000 uploads in PostgreSQL (see bench/README.md); not a test
	$(BIN)/python -m bench.analytics.bench $(BENCH_ARGS)

.PHONY: bench-forwarding
bench-forwarding: install system-deps  ## a 500 MiB study through the gateway into Orthanc vs direct STOW-RS (see bench/README.md); not a test
	$(BIN)/python -m bench.forwarding.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache web/node_modules web/dist
