"""Who may call the pipeline's HTTP endpoints, and what a caller may see (see docs/architecture.md, Security)."""
