"""Silences: list (active, pending, expired), create from an alert or from scratch with a matcher editor
that previews the alerts the silence will mute, edit, expire, and duplicate.

See docs/architecture.md, Web UI.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from pipeline.domain.durations import format_duration, parse_duration
from pipeline.domain.matchers import Matcher, parse_matchers
from pipeline.domain.models import format_time, parse_time
from pipeline.domain.muting.silence import Silence
from pipeline.domain.principals import Principal
from pipeline.domain.scope import Forbidden, owns_silence, scoped_matchers, visible_scopes
from pipeline.domain.tenancy import TENANT_LABEL
from pipeline.ingest.api.alerts import gettable_alerts
from pipeline.ingest.api.filters import matches_filter
from pipeline.ingest.api.silences import expire_silence, find_silence, save_silence
from pipeline.ingest.api.state import ApiState, state
from pipeline.ingest.security import principal
from pipeline.ingest.ui.pages import config_of, error_page, local_page, page, page_url, render, view

OPERATORS = ("=", "!=", "=~", "!~")
DEFAULT_DURATION = 2 * 3600.0
#: Alerts listed by a preview (all are counted).
PREVIEW_ALERTS = 20
TABS = ("active", "pending", "expired")


@dataclass
class SilenceForm:
    """The editor's fields as text, so that a mistake is shown back in place with the user's input."""

    matchers: list[tuple[str, str, str]] = field(default_factory=lambda: [("", "=", "")])
    starts: str = ""
    ends: str = ""
    comment: str = ""
    created_by: str = ""
    id: str = ""
    back: str = ""

    @classmethod
    def blank(cls, now: float, back: str = "") -> SilenceForm:
        # The start shown is to the second and never ahead of now: rounded up, a silence saved within that
        # fraction of a second would start pending, and the alert it was made for would not show as silenced.
        return cls(starts=format_time(math.floor(now)), ends=format_time(math.floor(now + DEFAULT_DURATION)),
                   back=back)

    @classmethod
    def of_alert(cls, labels: dict[str, str], now: float, back: str) -> SilenceForm:
        form = cls.blank(now, back)
        form.matchers = [(name, "=", value) for name, value in sorted(labels.items())]
        return form

    @classmethod
    def of_silence(cls, silence: Silence, now: float, copy: bool) -> SilenceForm:
        """An edit (same id) or a duplicate (a new silence with the same matchers, from now on)."""
        matchers = [(m.name, m.op, m.value) for m in silence.matchers]
        if copy:
            return cls(matchers=matchers, starts=format_time(math.floor(now)),
                       ends=format_time(math.floor(now + max(silence.ends_at - silence.starts_at, 60.0))),
                       comment=silence.comment)
        return cls(matchers=matchers, starts=format_time(silence.starts_at), ends=format_time(silence.ends_at),
                   comment=silence.comment, created_by=silence.created_by, id=silence.id)

    @classmethod
    async def posted(cls, request: web.Request) -> SilenceForm:
        form = await request.post()
        names, ops, values = (form.getall(key, []) for key in ("m_name", "m_op", "m_value"))
        rows = [(str(n).strip(), str(o), str(v)) for n, o, v in zip(names, ops, values, strict=False)]
        return cls(matchers=rows or [("", "=", "")], starts=str(form.get("starts", "")).strip(),
                   ends=str(form.get("ends", "")).strip(), comment=str(form.get("comment", "")).strip(),
                   created_by=str(form.get("created_by", "")).strip(), id=str(form.get("id", "")),
                   back=str(form.get("back", "")))

    def parsed_matchers(self) -> list[Matcher]:
        """The rows as matchers (empty rows skipped); raises ValueError naming the row."""
        out = []
        for index, (name, op, value) in enumerate(self.matchers, 1):
            if not name and not value:
                continue
            if op not in OPERATORS:
                raise ValueError(f"matcher {index}: unknown operator {op!r}")
            try:
                out.append(Matcher.create(name, op, value))
            except ValueError as exc:
                raise ValueError(f"matcher {index}: {exc}") from None
        if not out:
            raise ValueError("at least one matcher is required")
        return out

    def times(self) -> tuple[float, float]:
        starts = parse_time(self.starts, "start") if self.starts else time.time()
        if self.ends.strip() and self.ends.strip()[0].isdigit() and "T" not in self.ends:
            ends = (starts or time.time()) + parse_duration(self.ends)  # "2h": a duration from the start
        else:
            ends = parse_time(self.ends, "end")
        if starts is None or ends is None:
            raise ValueError("start and end are required")
        return starts, ends

    def to_silence(self, caller: Principal, auth_on: bool) -> Silence:
        if not self.comment:
            raise ValueError("a comment is required")
        starts, ends = self.times()
        created_by = caller.name if auth_on else (self.created_by or caller.name)
        return Silence(id=self.id, matchers=tuple(self.parsed_matchers()), starts_at=starts, ends_at=ends,
                       created_by=created_by, comment=self.comment, updated_at=starts)


def preview(current: ApiState, who: Principal, matchers: list[Matcher], now: float) -> tuple[int, list[dict[str, Any]]]:
    """How many of the alerts the viewer sees a silence with these matchers mutes now, and the first ones.

    The matchers are scoped as a save would scope them; raises :class:`Forbidden` as a save would."""
    probe = Silence(id="", matchers=tuple(scoped_matchers(who, matchers)), starts_at=now - 1, ends_at=now + 1,
                    created_by="", comment="", updated_at=now)
    muted = []
    for alert, _ in gettable_alerts(current, now, who):
        labels = alert["labels"]
        scopes = visible_scopes(who, current.muter.scopes(labels))
        if any(probe.mutes({**labels, TENANT_LABEL: scope}, now) for scope in scopes):
            muted.append(alert)
    muted.sort(key=lambda a: (a["labels"].get("alertname", ""), a["fingerprint"]))
    return len(muted), muted[:PREVIEW_ALERTS]


def _form_page(request: web.Request, form: SilenceForm, error: str | None = None, status: int = 200,
               count: int | None = None, alerts: list[dict[str, Any]] | None = None) -> web.Response:
    who = view(request)
    fixed = f'{TENANT_LABEL}="{who.tenant}"' if who.tenant else None
    if count is None:
        count, alerts = _preview_or_none(request, form)
    return render(request, "silence_form.html.j2", status=status, form=form, error=error, operators=OPERATORS,
                  fixed_matcher=fixed, preview_count=count, preview_alerts=alerts or [], preview_error=None)


def _preview_or_none(request: web.Request, form: SilenceForm) -> tuple[int | None, list[dict[str, Any]]]:
    try:
        return preview(state(request), view(request), form.parsed_matchers(), time.time())
    except (ValueError, Forbidden):
        return None, []


@page()
async def new_silence(request: web.Request) -> web.StreamResponse:
    """From scratch, from an alert (``alert=<fingerprint>``: its labels as matchers) or as a duplicate
    (``copy=<id>``)."""
    current, who, now = state(request), view(request), time.time()
    back = request.query.get("back", "")
    form = SilenceForm.blank(now, back)
    if "alert" in request.query:
        found = next((a for a, _ in gettable_alerts(current, now, who)
                      if a["fingerprint"] == request.query["alert"]), None)
        if found is None:
            raise LookupError(f"alert {request.query['alert']} not found")
        form = SilenceForm.of_alert(found["labels"], now, back)
    elif "copy" in request.query:
        form = SilenceForm.of_silence(find_silence(request, request.query["copy"], who), now, copy=True)
    return _form_page(request, form)


@page()
async def edit_silence(request: web.Request) -> web.StreamResponse:
    silence = find_silence(request, request.match_info["id"], view(request))
    return _form_page(request, SilenceForm.of_silence(silence, time.time(), copy=False))


@page()
async def save(request: web.Request) -> web.StreamResponse:
    """The editor's buttons: add or remove a matcher row (no script needed), or save."""
    form = await SilenceForm.posted(request)
    action = str((await request.post()).get("action", "save"))
    if action == "add":
        form.matchers.append(("", "=", ""))
        return _form_page(request, form)
    if action.startswith("remove-"):
        index = int(action.removeprefix("remove-")) if action.removeprefix("remove-").isdigit() else -1
        if 0 <= index < len(form.matchers):
            del form.matchers[index]
        form.matchers = form.matchers or [("", "=", "")]
        return _form_page(request, form)
    who = view(request)
    try:
        silence = await save_silence(request, form.to_silence(who, config_of(request).authenticator.enabled), who)
    except (ValueError, TypeError) as exc:
        return _form_page(request, form, error=str(exc), status=400)
    raise web.HTTPSeeOther(local_page(form.back) or page_url(request, f"/ui/silences/{silence.id}"))


@page()
async def preview_fragment(request: web.Request) -> web.StreamResponse:
    """The editor's live preview (htmx posts the form on every change)."""
    form = await SilenceForm.posted(request)
    try:
        count, alerts = preview(state(request), view(request), form.parsed_matchers(), time.time())
        error = None
    except (ValueError, Forbidden) as exc:
        count, alerts, error = None, [], str(exc)
    return render(request, "silence_preview.html.j2", preview_count=count, preview_alerts=alerts,
                  preview_error=error)


@page()
async def silence_detail(request: web.Request) -> web.StreamResponse:
    who, now = view(request), time.time()
    silence = find_silence(request, request.match_info["id"], who)
    count, alerts = preview(state(request), who, list(silence.matchers), now) if silence.state(now) == "active" \
        else (None, [])
    return render(request, "silence.html.j2", silence=silence, silence_state=silence.state(now),
                  preview_count=count, preview_alerts=alerts, preview_error=None)


@page()
async def expire(request: web.Request) -> web.StreamResponse:
    silence = find_silence(request, request.match_info["id"], view(request))
    try:
        await expire_silence(request, silence)
    except ValueError as exc:
        return error_page(request, 400, str(exc))
    back = local_page(str((await request.post()).get("back", "")))
    raise web.HTTPSeeOther(back or page_url(request, "/ui/silences", state="expired"))


@page()
async def silences_page(request: web.Request) -> web.StreamResponse:
    current, who, now = state(request), view(request), time.time()
    tab = request.query.get("state", "active")
    tab = tab if tab in TABS else "active"
    text = request.query.get("filter", "")
    try:
        matchers, error = (parse_matchers(text) if text.strip() else []), None
    except ValueError as exc:
        matchers, error = [], str(exc)
    mine = [s for s in current.muter.silences.by_id.values()
            if owns_silence(who, s.matchers) and matches_filter(matchers, {m.name: m.value for m in s.matchers})]
    counts = {name: sum(s.state(now) == name for s in mine) for name in TABS}
    order = {"active": lambda s: s.ends_at, "pending": lambda s: s.starts_at, "expired": lambda s: -s.ends_at}
    shown = sorted((s for s in mine if s.state(now) == tab), key=order[tab])
    return render(request, "silences.html.j2", status=400 if error else 200, silences=shown, tab=tab, tabs=TABS,
                  counts=counts, filter_text=text, filter_error=error, now=now, caller_name=principal(request).name,
                  format_duration=format_duration)
