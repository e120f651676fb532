# alert-pipeline: `make run` (demo on a local Apache Kafka) and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KAFKA_STAMP := .kafka/libs/.installed

.PHONY: install kafka java run test test-deps bench lint check-config clean

install: $(STAMP) $(KAFKA_STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

# Apache Kafka's jars from Maven Central (pinned in deploy/kafka/pom.xml), for the local broker.
kafka: $(KAFKA_STAMP)

java:
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	  [ -n "$$v" ] && [ "$$v" -ge 17 ] || { echo "Java 17 or newer is needed for the local Kafka broker (found: $${v:-none}): apt-get install openjdk-17-jre-headless"; exit 1; }; \
	  command -v mvn >/dev/null || { echo "Maven is needed to fetch Apache Kafka: apt-get install maven"; exit 1; }

$(KAFKA_STAMP): deploy/kafka/pom.xml | java
	rm -rf .kafka/libs
	mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/.kafka/libs
	touch $(KAFKA_STAMP)

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
	rm -rf $(VENV) .kafka .pytest_cache .alert-pipeline-data
