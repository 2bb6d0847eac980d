# Uptake task runner. Every target sets up what it needs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run test lint fmt typecheck proto venv tools clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml sdk/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./sdk -e '.[dev]'
	@touch $@

venv: $(STAMP) ## create .venv and install the SDK, the server and the dev tools

tools: ## install the system tools the tests need (Prometheus, promtool, Alertmanager)
	@bash scripts/ensure_tools.sh

run: $(STAMP) ## start the service on the embedded store (data in ./var/)
	$(VENV)/bin/uptake-server serve --dev

test: $(STAMP) tools ## run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff lint and format check, mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy sdk/src/uptake server/uptake_server

fmt: $(STAMP) ## format the code
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

proto: $(STAMP) ## regenerate the committed stubs from proto/
	PYTHON=$(PY) bash scripts/gen_proto.sh

clean: ## remove the virtualenv and local data
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

# Helm chart: the pinned helm binary comes from scripts/get_helm.sh (.tools/bin/helm).
HELM := .tools/bin/helm
CHART := deploy/helm/uptake
.PHONY: chart
chart: $(STAMP) ## lint, render and validate the Helm chart, then package it into dist/
	@bash scripts/get_helm.sh >/dev/null
	$(HELM) lint --strict $(CHART) -f $(CHART)/ci/defaults-values.yaml
	$(PY) -m pytest tests/deploy/test_chart.py tests/deploy/test_chart_values.py tests/deploy/test_health_check.py
	$(HELM) package $(CHART) --destination dist

.PHONY: bench-sdk
bench-sdk: $(STAMP) ## cost of one track() call: Uptake vs posthog.capture() vs Segment's track()
	$(PY) -m pip install --quiet posthog segment-analytics-python
	$(PY) bench/sdk/track_cost.py

.PHONY: bench
bench: $(STAMP) ## ingestion: SDK clients -> server -> store, against the bulk-insert limit
	$(PY) bench/ingest.py

# Storage suite against a real ClickHouse server (docs/operations.md, Testing).
.PHONY: test-clickhouse
test-clickhouse: $(STAMP) ## storage and KPI SQL tests against the server at UPTAKE_TEST_CLICKHOUSE_URL
	@test -n "$$UPTAKE_TEST_CLICKHOUSE_URL" || { echo "set UPTAKE_TEST_CLICKHOUSE_URL, e.g. http://default:uptake@127.0.0.1:18123 (docker compose -f docker-compose.clickhouse-test.yml up -d --wait)" >&2; exit 2; }
	$(PY) -m pytest tests/server/storage $(PYTEST_ARGS)

# KPI refresh and scrape time, events generated inside the embedded engine.
.PHONY: bench-kpi
bench-kpi: $(STAMP) ## KPI refresh and scrape time with 10 million events in the embedded store
	$(PY) bench/kpi/run.py

# Soak (not part of make test): SDK clients against one server for a bounded time.
SOAK_SECONDS ?= 120
.PHONY: soak
soak: $(STAMP) ## SDK clients for SOAK_SECONDS (120): throughput, p99 latency, memory, loss
	$(PY) bench/soak/soak.py --seconds $(SOAK_SECONDS)
