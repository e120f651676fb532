"""The ingest process's application: every API added to :func:`pipeline.ingest.app.new_app`, in flow order."""

from __future__ import annotations

from aiohttp import web

from pipeline.domain.config import Config
from pipeline.ingest import alerts, api, history, kube, quotas, receivers, templates
from pipeline.ingest.app import READINESS, new_app
from pipeline.ingest.ui import routes as ui


def create_ingest_app(config: Config) -> web.Application:
    """Alerts and Kubernetes payloads in; then the v2 API (after the writer's lifecycle: its views need
    the topics), history, receivers and templates; the web UI last, standing on the APIs."""
    app = new_app(config)
    alerts.add_routes(app)
    kube.add_routes(app)
    api.register(app)
    history.register(app)
    receivers.register(app)
    templates.register(app)
    app[quotas.QUOTAS] = quotas.Quotas(app[api.STATE].muter.alert_view)
    app[READINESS].append(("still loading silences and alerts from Kafka", lambda: app[api.STATE].muter.ready))
    ui.register(app)
    return app
