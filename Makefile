# alert-pipeline: `make run` (demo on a local Apache Kafka) and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KAFKA_STAMP := .kafka/libs/.installed
HTMX := pipeline/ui/static/vendor/htmx.min.js

.PHONY: install kafka ui-assets java run test test-deps bench lint check-config clean

install: $(STAMP) $(KAFKA_STAMP) $(HTMX)

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

# The web UI's one browser library, htmx, from the npm registry (pinned with its integrity hash in
# deploy/ui/package-lock.json), into a git-ignored folder the ingest serves: no CDN, works air-gapped.
ui-assets: $(HTMX)

$(HTMX): deploy/ui/package.json deploy/ui/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed to fetch the web UI's htmx: apt-get install npm"; exit 1; }
	npm ci --prefix deploy/ui --ignore-scripts --no-audit --no-fund --silent
	mkdir -p $(@D)
	cp deploy/ui/node_modules/htmx.org/dist/htmx.min.js deploy/ui/node_modules/htmx.org/LICENSE $(@D)/

run: install
	$(BIN)/alert-pipeline run --config examples/demo.yml --demo

# Real peers for the tests: Alertmanager (+ amtool), Prometheus and kcat, from Debian; Chromium (and a
# font with Hangul and Han characters for the screenshots) for the web UI's browser tests.
test-deps:
	@command -v amtool >/dev/null && command -v prometheus-alertmanager >/dev/null \
	  && command -v kcat >/dev/null && command -v prometheus >/dev/null && command -v chromium >/dev/null \
	  && [ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	       prometheus-alertmanager prometheus kcat chromium fonts-wqy-microhei >/dev/null; }

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
	rm -rf $(VENV) .kafka .pytest_cache .alert-pipeline-data deploy/ui/node_modules pipeline/ui/static/vendor
