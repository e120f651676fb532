"""Dead letters, for admins: every letter of the dead-letter topics with its stage and reason, and
replaying a notification given up on (one, or the ticked ones) or every letter a filter selects (a topic,
a tenant, a receiver).

See docs/architecture.md, Dead letters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pipeline.domain.config import Config
from pipeline.domain.redact import redact
from pipeline.ingest.ui.pages import config_of, page, render
from pipeline.kafka import deadletters
from pipeline.kafka.topics import topics_for

SHOWN = 200


@dataclass(frozen=True, slots=True)
class Selection:
    """The page's filter: a dead-letter topic (the prefix left out), a notification's tenant and receiver."""

    topic: str | None
    tenant: str | None
    receiver: str | None

    @classmethod
    def of(cls, values: Mapping[str, Any], topics: list[str]) -> Selection:
        topic = str(values.get("topic") or "") or None
        return cls(topic if topic in topics else None, str(values.get("tenant") or "") or None,
                   str(values.get("receiver") or "") or None)

    async def letters(self, config: Config, ids: list[str] | None = None) -> list[deadletters.DeadLetter]:
        """The selected letters, oldest first (the admin API's ``_selected``)."""
        read = await deadletters.read_dead_letters(config, self.topic)
        return deadletters.select(read, self.tenant, self.receiver, ids)


def _topics(config: Config) -> list[str]:
    topics = topics_for(config)
    return [name.removeprefix(topics.prefix) for name in topics.dead_letter_topics()]


@page(admin=True)
async def dead_letters_page(request: web.Request) -> web.StreamResponse:
    config = config_of(request)
    chosen = Selection.of(request.query, _topics(config))
    letters = await chosen.letters(config)
    letters.reverse()  # newest first
    rows = [(letter, letter.notification) for letter in letters[:SHOWN]]
    replayed, skipped = (request.query.get(k, "") for k in ("replayed", "skipped"))
    return render(request, "deadletters.html.j2", rows=rows, total=len(letters), chosen=chosen, redact=redact,
                  replayed=int(replayed) if replayed.isdigit() else None,
                  skipped=int(skipped) if skipped.isdigit() else 0, tenant_choices=config.tenant_names(),
                  topic_choices=_topics(config))


@page(admin=True)
async def replay(request: web.Request) -> web.StreamResponse:
    """One dead letter (its row's button), the ticked ones, or, with ``all``, every one the filter selects
    (a filter is required for that: replaying everything at once is the CLI's job, as in the API)."""
    form = await request.post()
    config = config_of(request)
    chosen = Selection.of(form, _topics(config))
    ids: list[str] | None = [str(form["one"])] if form.get("one") else [str(i) for i in form.getall("ids", [])]
    if form.get("all") and not form.get("one") and (chosen.topic or chosen.tenant or chosen.receiver):
        ids = None
    elif not ids:
        raise web.HTTPSeeOther("/ui/deadletters?replayed=0")
    done, skipped = await deadletters.replay(config, await chosen.letters(config, ids))
    raise web.HTTPSeeOther(f"/ui/deadletters?replayed={len(done)}&skipped={len(skipped)}")
