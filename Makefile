# Hearth: the two commands a fresh machine needs are `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HEARTH_TEST_PG_DSN ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: run test lint unit integration acceptance e2e-lan bench bench-pg chaos clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## make run: create the venv if needed, install, start Hearth (coordinator + local worker)
run: $(STAMP)
	$(BIN)/hearth up

## make test: lint, type-check and run the whole suite (SQLite and PostgreSQL)
test: $(STAMP) lint
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/conformance tests/integration

acceptance: $(STAMP)
	$(BIN)/pytest -q tests/acceptance examples

## make e2e-lan: hosts in network namespaces (needs root): mDNS, mutual TLS, a partition
e2e-lan: $(STAMP)
	$(BIN)/pytest -q tests/lan

## make bench: throughput, latency and backlog figures (prints; writes bench/results/)
bench: $(STAMP)
	$(BIN)/python bench/throughput.py --store sqlite
	$(BIN)/python bench/throughput.py --store postgres
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/backlog.py

## make chaos: kill -9 workers and the coordinator, restart PostgreSQL and cut a worker's
## network while 20,000 jobs flow per store; checks that nothing acknowledged is lost or
## completed twice (needs root; appends to bench/results/chaos.jsonl)
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py

## make fuzz: tests/fuzz far longer than `make test` runs it: Schemathesis over every API
## operation and the queue state machine on both stores (HEARTH_FUZZ_EXAMPLES=1000 for more)
HEARTH_FUZZ_EXAMPLES ?= 300
.PHONY: fuzz
fuzz: $(STAMP)
	HEARTH_FUZZ_EXAMPLES=$(HEARTH_FUZZ_EXAMPLES) $(BIN)/pytest -q -s --timeout 3600 tests/fuzz

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## make bench-peers: Hearth side by side with Celery, RQ, Huey, Dramatiq, Procrastinate
## and DBOS on W1 throughput, W2 latency, W3 crash and W4 backlog (installs the pinned peers
## into bench/.peers-venv; ARGS="--quick" for a smoke run, ARGS="--workloads w3,w4
## --backlog-deep 1000000" and so on: see python bench/peers/run.py --help)
.PHONY: bench-peers
bench-peers: $(STAMP)
	$(BIN)/python bench/peers/run.py $(ARGS)
