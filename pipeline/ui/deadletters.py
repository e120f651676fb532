"""Dead letters, for admins: every letter of the dead-letter topics with its stage and reason, and
replaying a notification given up on: one, the ticked ones, or every one a tenant/receiver filter selects.

The same reading, selection and replay as the admin API (:mod:`pipeline.api.deadletters`, which is
:mod:`pipeline.deadletters`): a replay re-publishes the notification under a new id, so the normal path
delivers it again. Reasons are shown redacted. Letters of other stages (alerts, Kubernetes events) are
listed for inspection; ``alert-pipeline dlq replay`` replays those.
"""

from __future__ import annotations

from aiohttp import web

from pipeline import deadletters
from pipeline.security.redact import redact
from pipeline.ui.pages import config_of, page, render

SHOWN = 200


def _filters(values: dict[str, str]) -> tuple[str | None, str | None]:
    return values.get("tenant") or None, values.get("receiver") or None


@page(admin=True)
async def dead_letters_page(request: web.Request) -> web.StreamResponse:
    tenant, receiver = _filters(dict(request.query))
    letters = deadletters.select(await deadletters.read_dead_letters(config_of(request)), tenant, receiver)
    letters.reverse()  # newest first
    rows = [(letter, letter.notification) for letter in letters[:SHOWN]]
    replayed, skipped = (request.query.get(k, "") for k in ("replayed", "skipped"))
    return render(request, "deadletters.html.j2", rows=rows, total=len(letters), tenant=tenant, receiver=receiver,
                  redact=redact, replayed=int(replayed) if replayed.isdigit() else None,
                  skipped=int(skipped) if skipped.isdigit() else 0, tenant_choices=config_of(request).tenant_names())


@page(admin=True)
async def replay(request: web.Request) -> web.StreamResponse:
    """One dead letter (its row's button), the ticked ones, or, with ``all``, every one the filter selects
    (a filter is required for that: replaying everything at once is the CLI's job, as in the API)."""
    form = await request.post()
    tenant, receiver = _filters({k: str(v) for k, v in form.items()})
    ids: list[str] | None = [str(form["one"])] if form.get("one") else [str(i) for i in form.getall("ids", [])]
    if form.get("all") and not form.get("one") and (tenant or receiver):
        ids = None
    elif not ids:
        raise web.HTTPSeeOther("/ui/deadletters?replayed=0")
    config = config_of(request)
    letters = deadletters.select(await deadletters.read_dead_letters(config), tenant, receiver, ids)
    done, skipped = await deadletters.replay(config, letters)
    raise web.HTTPSeeOther(f"/ui/deadletters?replayed={len(done)}&skipped={len(skipped)}")
