"""Kafka plumbing: client options, the local broker, topics, writers, readers, views, records, dead letters and
the stage runtime (see docs/architecture.md, Layers)."""
