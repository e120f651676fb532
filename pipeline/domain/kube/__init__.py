"""Kubernetes payloads and the rules that turn Events and audit events into alerts (see docs/architecture.md)."""
