"""Message templates: Jinja2 in a sandbox, a default per channel, per-receiver overrides, language packs.

See docs/architecture.md, Templates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import FileSystemLoader, Template, TemplateSyntaxError, pass_context, select_autoescape
from jinja2.runtime import Context

from pipeline.domain.metrics import TEMPLATE_ERRORS, TEMPLATE_LIMITS
from pipeline.domain.models import Notification
from senders.sandbox import BoundedSandbox, LimitExceeded, RenderJob, bound_filters, render_chunks, run_bounded
from senders.text import text_line

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).parent / "templates"
DEFAULT_LANGUAGE = "en"


def _format_time(value: str) -> str:
    """RFC 3339 (as in the payload) to ``2026-01-02 15:04:05 UTC``: readable in every language."""
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError):
        return str(value)


def _summary(alert: dict[str, Any]) -> str:
    annotations = alert["annotations"]
    return (annotations.get("summary") or annotations.get("message") or annotations.get("description")
            or alert["labels"].get("alertname", ""))


@pass_context
def _where(context: Context, alert: dict[str, Any]) -> str:
    return alert["labels"].get("namespace") or context["t"]("cluster")


def _icon(alert: dict[str, Any]) -> str:
    return "🔴" if alert["status"] == "firing" else "🟢"


@pass_context
def _when(context: Context, alert: dict[str, Any]) -> str:
    t = context["t"]
    out = f"{t('started')}: {_format_time(alert['startsAt'])}"
    if alert["status"] == "resolved":
        out += f", {t('ended')}: {_format_time(alert['endsAt'])}"
    return out


@pass_context
def _counts(context: Context) -> str:
    t, firing, resolved, left_out = context["t"], context["firing"], context["resolved"], context["truncatedAlerts"]
    return ", ".join(([t("alerts_firing", n=len(firing))] if firing else [])
                     + ([t("alerts_resolved", n=len(resolved))] if resolved else [])
                     + ([t("alerts_not_shown", n=left_out)] if left_out else []))


@pass_context
def _title(context: Context) -> str:
    """The default one-line title, for templates that show it: text that the caller escapes if it
    writes HTML (an ``{% include %}`` would keep the included template's own escaping, none)."""
    return ENVIRONMENT.get_template("title.j2").render(context.get_all()).strip()


def _environment() -> BoundedSandbox:
    env = BoundedSandbox(
        loader=FileSystemLoader(TEMPLATE_DIR),
        # Templates named *.html.j2 produce HTML: label values are escaped there, nowhere else.
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Helpers of the default templates, as functions (not Jinja macros) so that what they return is
    # plain text, escaped like any value in HTML templates.
    env.filters["time"] = _format_time
    env.globals.update(title=_title, summary=_summary, where=_where, icon=_icon, when=_when, counts=_counts)
    bound_filters(env)
    return env


ENVIRONMENT = _environment()


@cache
def language_pack(language: str) -> dict[str, str]:
    """The words of a language; a word missing from it falls back to English."""
    words = yaml.safe_load((TEMPLATE_DIR / "i18n" / f"{language}.yaml").read_text())
    return words if language == DEFAULT_LANGUAGE else {**language_pack(DEFAULT_LANGUAGE), **words}


def languages() -> list[str]:
    return sorted(path.stem for path in (TEMPLATE_DIR / "i18n").glob("*.yaml"))


def template_context(notification: Notification, external_url: str, language: str) -> dict[str, Any]:
    words = language_pack(language)

    def translate(word: str, **values: Any) -> str:
        # Only our own pack's words are format strings; a template's text never is (issue 12: a word
        # such as '{f.__globals__[...]}' read the process' globals through str.format).
        found = words.get(word)
        return word if found is None else found.format(**values)

    context = notification.webhook_payload(external_url)
    context.update(
        tenant=notification.tenant,
        firing=[a for a in notification.alerts if a["status"] == "firing"],
        resolved=[a for a in notification.alerts if a["status"] == "resolved"],
        language=language,
        t=translate,
    )
    return context


@dataclass(frozen=True, slots=True)
class TemplateFailure:
    """A part's template that failed to render: which (``custom`` or ``default``), why, and the line
    of the template where it failed (``None`` when the error has no place in it)."""

    part: str
    template: str
    message: str
    line: int | None
    #: The limit a render broke (``time``, ``size``), if that is why it failed.
    limit: str | None = None

    @classmethod
    def of(cls, part: str, template: str, exc: Exception) -> TemplateFailure:
        limit = exc.limit if isinstance(exc, LimitExceeded) else None
        return cls(part, template, f"{type(exc).__name__}: {exc}", error_line(exc), limit)


def error_line(exc: Exception) -> int | None:
    """The template line an error happened on: Jinja rewrites tracebacks so that a template's frames
    carry its file name (``<template>`` for a string) and the template's own line numbers."""
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    line = None
    traceback = exc.__traceback__
    while traceback is not None:
        filename = traceback.tb_frame.f_code.co_filename
        if filename == "<template>" or filename.endswith(".j2"):
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


def _compile(source: str, html: bool) -> Template:
    if html:
        source = "{% autoescape true %}" + source + "{% endautoescape %}"
    return ENVIRONMENT.from_string(source)


class MessageTemplates:
    """The templates of one integration: ``defaults`` maps each part to a default template name,
    ``overrides`` maps some parts to the receiver's own Jinja source. Each part renders within
    ``timeout`` seconds and ``max_bytes`` characters."""

    def __init__(self, channel: str, defaults: dict[str, str], overrides: dict[str, str], language: str,
                 timeout: float = 2.0, max_bytes: int = 1024 * 1024):
        self.channel = channel
        self.language = language
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.defaults = {part: ENVIRONMENT.get_template(name) for part, name in defaults.items()}
        # Overrides were syntax-checked when the config was loaded.
        self.overrides = {part: _compile(source, defaults[part].endswith(".html.j2"))
                          for part, source in overrides.items()}

    async def render(self, notification: Notification, external_url: str) -> dict[str, str]:
        """Every part, bounded and off the event loop; failures logged and counted."""
        parts, failures = await self.render_checked(notification, external_url)
        for failure in failures:
            TEMPLATE_ERRORS.labels(self.channel, failure.part, failure.template).inc()
            if failure.limit:
                TEMPLATE_LIMITS.labels(self.channel, failure.part, failure.limit).inc()
            log.warning("template error in the %s %s template of %s/%s %s (%s); using the default",
                        failure.template, failure.part, notification.tenant, notification.receiver,
                        notification.integration, failure.message)
        return parts

    async def render_checked(self, notification: Notification,
                             external_url: str) -> tuple[dict[str, str], list[TemplateFailure]]:
        """Every part, and the failures that made a part fall back (what a template preview shows).

        The parts render in a thread of their own, one after the other, each within the time and size
        limits (:func:`senders.sandbox.run_bounded`)."""
        context = template_context(notification, external_url, self.language)
        failures: list[TemplateFailure] = []
        try:
            parts = await run_bounded(lambda job: {part: self._render_part(part, context, notification, failures, job)
                                                   for part in self.defaults}, self.max_bytes, self.timeout)
        except LimitExceeded as exc:  # interrupted just as a part ended: rare, and still sent
            failures.append(TemplateFailure.of("all", "default", exc))
            parts = dict.fromkeys(self.defaults, text_line(notification))
        return parts, failures

    def _render_part(self, part: str, context: dict[str, Any], notification: Notification,
                     failures: list[TemplateFailure], job: RenderJob) -> str:
        override = self.overrides.get(part)
        if override is not None:
            try:
                return render_chunks(override.generate(context), job, self.timeout).strip()
            except Exception as exc:  # any error of a tenant's template, or a limit; the default takes over
                failures.append(TemplateFailure.of(part, "custom", exc))
        try:
            return render_chunks(self.defaults[part].generate(context), job, self.timeout).strip()
        except Exception as exc:  # a bug of ours; still send something readable
            failures.append(TemplateFailure.of(part, "default", exc))
            return text_line(notification)
