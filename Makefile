# alert-pipeline: `make run` (demo on an embedded broker) and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-deps test-rebalance bench lint check-config clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[broker,test]'
	touch $(STAMP)

run: install
	$(BIN)/alert-pipeline run --config examples/demo.yml --demo

# Real peers for the tests: Alertmanager (+ amtool), Prometheus and kcat, from Debian.
test-deps:
	@command -v amtool >/dev/null && command -v prometheus-alertmanager >/dev/null \
	  && command -v kcat >/dev/null && command -v prometheus >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	       prometheus-alertmanager prometheus kcat >/dev/null; }

test: install test-deps
	$(BIN)/ruff check pipeline agents senders tests
	$(BIN)/pytest -q

bench: install
	$(BIN)/python -u -m tests.bench

lint: install
	$(BIN)/ruff check pipeline agents senders tests

check-config: install
	$(BIN)/alert-pipeline check-config examples/demo.yml

clean:
	rm -rf $(VENV) .pytest_cache .alert-pipeline-data

# Multi-worker rebalancing on Tansu (not in `make test`: see tests/test_workers.py).
test-rebalance: install
	AP_REBALANCE_TESTS=1 $(BIN)/pytest -q -s tests/test_workers.py
