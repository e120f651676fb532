"""The Kubernetes source stages: raw Events and audit events to alerts (see docs/architecture.md)."""
