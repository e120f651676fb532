# The image the Helm chart (deploy/helm) and deploy/kubernetes run: `alert-pipeline ingest` and
# `alert-pipeline worker`. Debian bookworm's Python 3.11, the dependencies pinned in requirements.lock.
# Build: `make image` (buildah, no daemon) or `docker build -t alert-pipeline:0.1.0 .`.
ARG BASE=docker.io/library/debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY pyproject.toml requirements.lock README.md ./
COPY pipeline pipeline
COPY agents agents
COPY senders senders
COPY examples/demo.yml /build/demo.yml
# Installed, then checked: the image's command loads a config (channel catalog, rules, templates).
# Behind a TLS-inspecting proxy, give its CA bundle as the build secret "ca-bundle" (used by pip, not kept).
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && python3 -m venv /opt/alert-pipeline \
 && /opt/alert-pipeline/bin/pip install --no-cache-dir --quiet -c requirements.lock . \
 && /opt/alert-pipeline/bin/alert-pipeline check-config /build/demo.yml \
 && { test -f /opt/alert-pipeline/lib/python3.11/site-packages/pipeline/ingest/ui/static/vendor/htmx.min.js \
      || { echo "the web UI's htmx is missing: run make ui-assets before building"; exit 1; }; } \
 && rm -rf /build
WORKDIR /var/lib/alert-pipeline
USER 10001:10001
EXPOSE 19093 19094
ENTRYPOINT ["/opt/alert-pipeline/bin/alert-pipeline"]
CMD ["--help"]
