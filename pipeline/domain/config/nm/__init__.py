"""The Notification Manager import: its resources read into the config (see docs/architecture.md)."""
