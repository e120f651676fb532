"""Template preview: ``POST /api/v1/templates/test`` and ``alert-pipeline templates test``.

Templates (or a configured receiver's) are rendered for sample or given alerts, per channel and per
language, with the same :class:`~senders.templates.MessageTemplates` the senders use, so a preview is
what a notification would say. Where delivery would fall back to the default for a failing part, the
preview shows the fallback too, and the failure with its line in the template.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateSyntaxError

from pipeline.domain.config import ReceiverConfig
from pipeline.domain.models import Alert
from senders.base import Sender
from senders.catalog import templated_channels
from senders.templates import ENVIRONMENT, MessageTemplates, TemplateFailure, languages
from senders.testsend import make_test_notification, sample_alerts


@dataclass(slots=True)
class Rendering:
    """One channel in one language: every part's text, and what failed on the way."""

    channel: str
    language: str
    parts: dict[str, str]
    errors: list[TemplateFailure] = field(default_factory=list)
    integration: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"channel": self.channel, "language": self.language, "parts": self.parts,
                               "errors": [{"part": e.part, "template": e.template, "message": e.message,
                                           "line": e.line} for e in self.errors]}
        if self.integration:
            out["integration"] = self.integration
        return out


async def _render(channel: str, sender: type[Sender], overrides: dict[str, str], language: str, tenant: str,
            receiver: str, integration: str, alerts: list[Alert], external_url: str) -> Rendering:
    usable, errors = {}, []
    for part, source in overrides.items():
        try:
            ENVIRONMENT.parse(source)
            usable[part] = source
        except TemplateSyntaxError as exc:
            errors.append(TemplateFailure(part, "custom", f"TemplateSyntaxError: {exc.message}", exc.lineno))
    templates = MessageTemplates(channel, sender.default_templates, usable, language)
    notification = make_test_notification(tenant, receiver, integration, alerts, time.time())
    parts, failures = await templates.render_checked(notification, external_url)
    return Rendering(channel, language, parts, errors + failures, integration)


def _checked_languages(wanted: list[str] | None) -> list[str]:
    known = languages()
    unknown = sorted(set(wanted or ()) - set(known))
    if unknown:
        raise ValueError(f"unknown languages {unknown} (known: {known})")
    return list(wanted or known)


async def preview(templates: dict[str, str], channels: list[str] | None = None,
                  wanted_languages: list[str] | None = None, alerts: list[Alert] | None = None,
                  tenant: str = "global", receiver: str = "preview", external_url: str = "") -> list[Rendering]:
    """``templates`` (part -> Jinja source) rendered for each channel that has one of those parts (or
    the ``channels`` asked for) and each language. Raises ValueError for an unknown channel, part or
    language."""
    known = templated_channels()
    unknown = sorted(set(channels or ()) - set(known))
    if unknown:
        raise ValueError(f"unknown channels {unknown} (templated channels: {sorted(known)})")
    chosen = channels or [kind for kind, sender in known.items()
                          if not templates or set(templates) & set(sender.default_templates)]
    offered = {part for kind in chosen for part in known[kind].default_templates}
    if set(templates) - offered:
        raise ValueError(f"unknown template parts {sorted(set(templates) - offered)} for channels {chosen} "
                         f"(parts: {sorted(offered)})")
    alerts = alerts or sample_alerts(time.time())
    return [await _render(kind, known[kind], {p: s for p, s in templates.items() if p in known[kind].default_templates},
                          language, tenant, receiver, "", alerts, external_url)
            for kind in chosen for language in _checked_languages(wanted_languages)]


async def preview_receiver(tenant: str, receiver: ReceiverConfig, wanted_languages: list[str] | None = None,
                           alerts: list[Alert] | None = None, external_url: str = "") -> list[Rendering]:
    """A configured receiver's integrations rendered with their own templates, each in its own
    language or in each of ``wanted_languages``."""
    alerts = alerts or sample_alerts(time.time())
    known = templated_channels()
    return [await _render(config.kind, known[config.kind], config.template_overrides(), language, tenant,
                          receiver.name, integration, alerts, external_url)
            for integration, config in receiver.integrations() if config.kind in known  # not webhooks, files
            for language in (_checked_languages(wanted_languages) if wanted_languages else [config.language])]
