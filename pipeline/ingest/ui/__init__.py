"""The web UI for tenants and platform admins, served by the ingest (see docs/architecture.md, Web UI).

Server-rendered Jinja2 pages with htmx; every page stands on the same principals and scoping rules as the API.
"""
