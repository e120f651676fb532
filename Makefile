# alert-pipeline: `make run` (demo on a local Apache Kafka) and `make test` work on a fresh clone.
PYTHON ?= python3
comma := ,
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KAFKA_STAMP := .kafka/libs/.installed
HTMX := pipeline/ingest/ui/static/vendor/htmx.min.js

.PHONY: install kafka ui-assets java run test test-deps bench lint check-config clean deploy-tools deploy-check image

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

test: install test-deps deploy-check
	$(BIN)/ruff check pipeline agents senders tests
	$(BIN)/pytest -q --durations=20

bench: install
	$(BIN)/python -u -m tests.bench $(ARGS)

lint: install
	$(BIN)/ruff check pipeline agents senders tests

check-config: install
	$(BIN)/alert-pipeline check-config examples/demo.yml

# Deploy checks: helm and kubeconform built by `go install` at pinned versions, and kubeconform's schemas
# generated from the Kubernetes OpenAPI spec (the k8s.io/kubernetes module) and the Prometheus Operator's
# CRDs, once each, behind stamps in .tools (git-ignored). Strimzi's CRDs come from no registry reachable
# here, so KafkaTopic and KafkaUser are checked by tests/test_deploy.py instead of a schema.
TOOLS := $(CURDIR)/.tools
HELM_VERSION := v3.16.4
KUBECONFORM_VERSION := v0.7.0
KUBERNETES_VERSION := 1.32.3
PROMETHEUS_OPERATOR_VERSION := v0.80.1
HELM := $(TOOLS)/bin/helm
KUBECONFORM := $(TOOLS)/bin/kubeconform
SCHEMAS := $(TOOLS)/schemas/v$(KUBERNETES_VERSION)-standalone-strict
HELM_STAMP := $(TOOLS)/.helm-$(HELM_VERSION)
KUBECONFORM_STAMP := $(TOOLS)/.kubeconform-$(KUBECONFORM_VERSION)
SCHEMAS_STAMP := $(SCHEMAS)/.stamp-$(PROMETHEUS_OPERATOR_VERSION)
GOMODCACHE = $(shell go env GOMODCACHE)
CRDS = $(GOMODCACHE)/github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION)/example/prometheus-operator-crd
CHART := deploy/helm/alert-pipeline
KUBECONFORM_ARGS := -strict -summary -kubernetes-version $(KUBERNETES_VERSION) -skip KafkaTopic,KafkaUser \
	-schema-location '$(TOOLS)/schemas/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json'

deploy-tools: $(HELM_STAMP) $(KUBECONFORM_STAMP) $(SCHEMAS_STAMP)

$(HELM_STAMP):
	@command -v go >/dev/null || { echo "Go is needed to build helm and kubeconform (go install)"; exit 1; }
	GOBIN=$(TOOLS)/bin go install -ldflags "-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)" \
	  helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	touch $@

$(KUBECONFORM_STAMP):
	GOBIN=$(TOOLS)/bin go install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)
	touch $@

$(SCHEMAS_STAMP): deploy/tools/requirements.txt $(KUBECONFORM_STAMP)
	rm -rf $(SCHEMAS) $(TOOLS)/openapi2jsonschema && mkdir -p $(SCHEMAS)
	$(PYTHON) -m venv $(TOOLS)/openapi2jsonschema
	$(TOOLS)/openapi2jsonschema/bin/pip install --quiet -r deploy/tools/requirements.txt
	go mod download k8s.io/kubernetes@v$(KUBERNETES_VERSION) \
	  github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION)
	# The tool resolves references under the working directory, so -o is relative. It cannot convert the
	# CustomResourceDefinition kind (logged in generate.log, not needed); kubeconform fails on any other missing one.
	cd $(TOOLS)/schemas && $(TOOLS)/openapi2jsonschema/bin/openapi2jsonschema --kubernetes --expanded --stand-alone \
	  --strict -o $(notdir $(SCHEMAS)) \
	  file://$(GOMODCACHE)/k8s.io/kubernetes@v$(KUBERNETES_VERSION)/api/openapi-spec/swagger.json >generate.log 2>&1
	cd $(SCHEMAS) && FILENAME_FORMAT='{kind}-{group}-{version}' $(TOOLS)/openapi2jsonschema/bin/python \
	  $(GOMODCACHE)/github.com/yannh/kubeconform@$(KUBECONFORM_VERSION)/scripts/openapi2jsonschema.py \
	  $(CRDS)/monitoring.coreos.com_podmonitors.yaml $(CRDS)/monitoring.coreos.com_servicemonitors.yaml >/dev/null
	touch $@

# helm lint and helm template over the default and the multi-tenant values, each rendering (and the plain
# manifests of deploy/kubernetes) validated by kubeconform against the Kubernetes schemas.
deploy-check: deploy-tools
	@set -e; for values in "" "-f $(CHART)/ci/multi-tenant-values.yaml"; do \
	  echo "helm lint/template $${values:-(default values)}"; \
	  $(HELM) lint --strict --kube-version $(KUBERNETES_VERSION) $(CHART) $$values; \
	  $(HELM) template alert-pipeline $(CHART) --kube-version $(KUBERNETES_VERSION) $$values \
	    | $(KUBECONFORM) $(KUBECONFORM_ARGS) -; \
	done
	$(KUBECONFORM) $(KUBECONFORM_ARGS) deploy/kubernetes

# The image the chart and deploy/kubernetes name, built with buildah (no daemon; chroot isolation runs in
# an unprivileged container). No image registry is reachable here, so its base is Debian bookworm made by
# debootstrap from Debian's archive (what debian:bookworm-slim holds) and imported once; elsewhere
# `buildah bud .` or `docker build .` use Debian's image. Rebuilt only when its inputs change (a tag per
# digest of the inputs). CA_BUNDLE: the CA bundle pip needs behind a TLS-inspecting proxy.
IMAGE := alert-pipeline:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
BASE_IMAGE := localhost/alert-pipeline-base:bookworm
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
IMAGE_INPUTS := Dockerfile .dockerignore pyproject.toml requirements.lock README.md examples/demo.yml \
	$(shell git ls-files pipeline agents senders 2>/dev/null) $(HTMX)
IMAGE_DIGEST = $(shell cat $(IMAGE_INPUTS) | sha256sum | cut -c1-16)

# The web UI's htmx (git-ignored, fetched by npm) is part of the build context: the image serves it.
image: $(HTMX)
	@mkdir -p $(TOOLS)
	@command -v buildah >/dev/null && command -v debootstrap >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap >/dev/null; }
	@buildah inspect --type image $(BASE_IMAGE) >/dev/null 2>&1 || { set -e; rm -rf $(TOOLS)/rootfs; \
	  debootstrap --variant=minbase bookworm $(TOOLS)/rootfs >$(TOOLS)/debootstrap.log; \
	  container=$$(buildah from scratch); cp -a $(TOOLS)/rootfs/. $$(buildah mount $$container)/; \
	  buildah umount $$container; buildah commit -q $$container $(BASE_IMAGE); buildah rm $$container; \
	  rm -rf $(TOOLS)/rootfs; }
	@buildah inspect --type image alert-pipeline:inputs-$(IMAGE_DIGEST) >/dev/null 2>&1 \
	  || buildah bud --isolation chroot --pull=never --build-arg BASE=$(BASE_IMAGE) \
	     $(if $(wildcard $(CA_BUNDLE)),--secret id=ca-bundle$(comma)src=$(CA_BUNDLE)) \
	     -t $(IMAGE) -t alert-pipeline:inputs-$(IMAGE_DIGEST) . >$(TOOLS)/image-build.log 2>&1 \
	  || { tail -30 $(TOOLS)/image-build.log; exit 1; }
	@buildah images --format '{{.Name}}:{{.Tag}}' | grep '/alert-pipeline:inputs-' \
	  | grep -v ':inputs-$(IMAGE_DIGEST)$$' | xargs -r buildah rmi >/dev/null   # earlier builds
	@echo "$(IMAGE) built (inputs $(IMAGE_DIGEST))"

clean:
.PHONY: install kafka ui-assets java run test test-deps bench lint check-config clean deploy-tools deploy-check image
