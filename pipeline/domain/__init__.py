"""Shared domain code: models, config, matchers, routing, tenancy, muting, Kubernetes payloads and rules. It
imports nothing of the project above it (see docs/architecture.md, Layers)."""
