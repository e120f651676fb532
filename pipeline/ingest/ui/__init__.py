"""The web UI for tenants and platform admins, served by the ingest (see docs/architecture.md, Web UI).

Server-rendered Jinja2 pages with htmx for the parts that update in place; every page stands on the
same principals and scoping rules as the API (``pipeline/ingest/security.py``, ``pipeline/domain/scope.py``), with a browser session instead
of the Authorization header.
"""
