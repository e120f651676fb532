"""The processes and the CLI: `alert-pipeline ingest`, `worker`, `run` and the operator commands."""
