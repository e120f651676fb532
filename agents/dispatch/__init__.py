"""The dispatch stage: aggregation groups and their flushes (see docs/architecture.md)."""
