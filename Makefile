# cdrflow — `make` lists the targets. `make run` and `make test` do their own set-up.
SHELL := bash
.DEFAULT_GOAL := help
.SHELLFLAGS := -eu -o pipefail -c

# uv must use this machine's Python and never download a toolchain.
export UV_PYTHON_DOWNLOADS := never
PYTHON ?= python3
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
VENV := .venv
BIN := $(VENV)/bin

CDRFLOW_HOST ?= 127.0.0.1
CDRFLOW_PORT ?= 8000
CDRFLOW_MOCK_RATE ?= 30
CDRFLOW_MOCK_EDGE ?= 6
CDRFLOW_DATA_DIR ?= ./var
# Exported to `make run` and `make migrate` only: a test's own `cdrflow run` must not inherit the
# mock feeds (a mock HiPath call once showed up as "a call that was never posted is stored").
run migrate: export CDRFLOW_HOST := $(CDRFLOW_HOST)
run migrate: export CDRFLOW_PORT := $(CDRFLOW_PORT)
run migrate: export CDRFLOW_MOCK_RATE := $(CDRFLOW_MOCK_RATE)
run migrate: export CDRFLOW_MOCK_EDGE := $(CDRFLOW_MOCK_EDGE)
run migrate: export CDRFLOW_DATA_DIR := $(CDRFLOW_DATA_DIR)

CHROMIUM ?= chromium

PG_VERSION = $(shell ls /etc/postgresql 2>/dev/null | head -n1)

.PHONY: help
help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

MANIFESTS := pyproject.toml uv.lock $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)

# Developers' set: what running needs plus the test, lint and bench groups (pyproject.toml).
$(VENV)/.synced: $(UV) $(MANIFESTS)
	$(UV) sync --locked --python $(PYTHON)
	@touch $@ $(VENV)/.synced-run

# What running needs, nothing else (--inexact: a developer's test tools stay installed).
$(VENV)/.synced-run: $(UV) $(MANIFESTS)
	$(UV) sync --locked --no-dev --inexact --python $(PYTHON)
	@touch $@

.PHONY: setup
setup: $(VENV)/.synced ## install the workspace with the developer tools (uv, Python deps) into .venv

.PHONY: setup-run
setup-run: $(VENV)/.synced-run ## install only what running needs into .venv

.PHONY: run
run: setup-run ## start the whole platform on its embedded defaults (one process, SQLite, mock feed)
	$(BIN)/cdrflow run --host $(CDRFLOW_HOST) --port $(CDRFLOW_PORT)

.PHONY: services
services: ## make sure the PostgreSQL the tests use is up (PGHOST/PGPORT, default 127.0.0.1:5432)
	@host="$${PGHOST:-127.0.0.1}"; port="$${PGPORT:-5432}"; \
	pg_isready -q -h "$$host" -p "$$port" && exit 0; \
	if [ -n "$(PG_VERSION)" ] && command -v pg_ctlcluster >/dev/null; then \
	  echo "starting PostgreSQL $(PG_VERSION)"; \
	  if pg_ctlcluster --skip-systemctl-redirect $(PG_VERSION) main start; then \
	    for i in $$(seq 30); do pg_isready -q -h "$$host" -p "$$port" && exit 0; sleep 1; done; \
	  fi; \
	fi; \
	echo "PostgreSQL is not answering on $$host:$$port: start it (Debian: pg_ctlcluster <version> main start)" \
	  "or point PGHOST/PGPORT/PGUSER/PGPASSWORD (or CDRFLOW_TEST_PG_ADMIN) at one that runs." >&2; \
	exit 1

.PHONY: test
test: setup services chromium promtool ## run the tests (real PostgreSQL, Tansu Kafka broker, moto S3)
	$(BIN)/pytest -q

.PHONY: chromium
chromium: ## install Debian's chromium for the dashboard browser test (apt-get; fails loudly when it cannot)
	@command -v $(CHROMIUM) >/dev/null || { \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq chromium; } || { \
	  echo "cannot install chromium (apt-get install chromium failed): install it, or the dashboard browser test fails under CI=true" >&2; \
	  exit 1; }

.PHONY: promtool
promtool: ## install Debian's prometheus (promtool, for the alert rule tests) when missing
	@command -v promtool >/dev/null || (apt-get update -qq && apt-get install -y -qq prometheus)

.PHONY: lint
lint: setup promtool ## ruff lint + format check, deploy files check (promtool, schemas, env names)
	$(BIN)/ruff check libs services cdrflow tests bench
	$(BIN)/ruff format --check libs services cdrflow tests bench
	$(BIN)/python deploy/check.py

.PHONY: fmt
fmt: setup ## format the code
	$(BIN)/ruff check --fix libs services cdrflow tests bench
	$(BIN)/ruff format libs services cdrflow tests bench

.PHONY: typecheck
typecheck: setup ## mypy --strict on libs/, services/ and cdrflow/
	$(BIN)/mypy libs/cdrmodel/cdrmodel libs/cdrkit/cdrkit services/*/cdr_* cdrflow

.PHONY: check
check: lint typecheck test ## lint, typecheck and test

.PHONY: bench
bench: setup services ## run the benchmarks (figures and ratios to the physical limits)
	$(BIN)/python -m bench

.PHONY: migrate
migrate: setup-run ## upgrade the database at CDRFLOW_DATABASE_URL (default: SQLite in the data dir)
	$(BIN)/cdrflow migrate

.PHONY: clean
clean: ## remove the virtualenv, caches and local data
	rm -rf $(VENV) .tools var .bench test-artifacts .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
