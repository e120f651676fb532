"""``/api/v2/silences`` and ``/api/v2/silence/{id}``: silences are written to the compacted topic.

See docs/architecture.md, Silences, inhibition and the Alertmanager v2 API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace

import orjson
from aiohttp import web

from pipeline.domain.muting.silence import TENANT_LABEL, Silence, can_update, create, expire, validate
from pipeline.domain.principals import Principal
from pipeline.domain.scope import Forbidden, owns_silence, scoped_matchers
from pipeline.ingest.api.filters import BadQuery, filter_matchers, matches_filter
from pipeline.ingest.api.state import STATE, answer, failure, state
from pipeline.ingest.app import CONFIG, WRITER
from pipeline.ingest.quotas import silence_refusal
from pipeline.ingest.security import principal
from pipeline.kafka.producer import BrokerUnavailable, RecordTooLarge
from pipeline.kafka.topics import topics_for

log = logging.getLogger(__name__)

_ORDER = {"active": 0, "pending": 1, "expired": 2}


def _sort_key(silence: Silence, now: float) -> tuple[int, float]:
    """Alertmanager's listing order: active by end, then pending by start, then expired, latest first."""
    current = silence.state(now)
    when = {"active": silence.ends_at, "pending": silence.starts_at, "expired": -silence.ends_at}[current]
    return _ORDER[current], when


async def _write(request: web.Request, silences: list[Silence]) -> None:
    """Put silences on the topic (raises the 503 answer if Kafka does not acknowledge) and in our view."""
    topic = topics_for(request.app[CONFIG]).silences
    records = [(s.id.encode(), orjson.dumps(s.to_record())) for s in silences]
    try:
        await request.app[WRITER].write(topic, records)
    except RecordTooLarge as exc:
        raise web.HTTPRequestEntityTooLarge(max_size=request.app[CONFIG].kafka.max_record_bytes, actual_size=0,
                                            text=orjson.dumps(str(exc)).decode(),
                                            content_type="application/json") from None
    except BrokerUnavailable as exc:
        raise web.HTTPServiceUnavailable(body=orjson.dumps(str(exc)), content_type="application/json",
                                         headers={"Retry-After": "5"}) from None
    view = request.app[STATE].muter.silence_view
    for silence in silences:
        view.apply(silence.id, silence.to_record())


async def list_silences(request: web.Request) -> web.Response:
    current, now = state(request), time.time()
    try:
        matchers = filter_matchers(request)
    except BadQuery as exc:
        return failure(400, str(exc))
    caller = principal(request)
    found = [
        s for s in current.muter.silences.by_id.values()
        if owns_silence(caller, s.matchers) and matches_filter(matchers, {m.name: m.value for m in s.matchers})
    ]
    return answer([s.to_api(now) for s in sorted(found, key=lambda s: _sort_key(s, now))])


def _check_tenant(silence: Silence, request: web.Request) -> None:
    """A tenant scope that names no tenant is almost certainly a typo that would mute nothing."""
    known = set(request.app[CONFIG].tenant_names())
    for matcher in silence.matchers:
        if matcher.name == TENANT_LABEL and not matcher.is_regex and matcher.value not in known:
            raise ValueError(f"{TENANT_LABEL}: unknown tenant {matcher.value!r} (known: {', '.join(sorted(known))})")


class LimitReached(ValueError):
    """A new silence would break a count or size limit (answered with 400, the message as it is)."""


def _check_limits(request: web.Request, silence: Silence, replaced: Silence | None, caller: Principal,
                  now: float) -> None:
    """Raise :class:`LimitReached` when a new silence would break a limit (an update in place adds none)."""
    settings = request.app[CONFIG].ingest
    size = len(orjson.dumps(silence.to_record()))
    if settings.max_silence_size_bytes and size > settings.max_silence_size_bytes:
        raise LimitReached(f"silence is {size} bytes, over the limit of {settings.max_silence_size_bytes}")
    live = [s for s in request.app[STATE].muter.silences.by_id.values()
            if s.state(now) != "expired" and (replaced is None or s.id != replaced.id)]
    if settings.max_silences and len(live) >= settings.max_silences:
        raise LimitReached(f"too many silences: the limit of {settings.max_silences} is reached")
    if caller.tenant is not None and settings.max_silences_per_tenant and sum(
            owns_silence(caller, s.matchers) for s in live) >= settings.max_silences_per_tenant:
        raise LimitReached(f"too many silences of tenant {caller.tenant}: "
                           f"the limit of {settings.max_silences_per_tenant} is reached")


async def save_silence(request: web.Request, silence: Silence, caller: Principal) -> Silence:
    """Scope, check and write a posted silence for ``caller``: the one write path of the API and the web UI.

    Raises :class:`Forbidden` (403), ``LookupError`` (404: an id the caller does not own), ``ValueError``
    (400), or the 503 answer when Kafka does not acknowledge."""
    current, now = state(request), time.time()
    silence = replace(silence, matchers=tuple(scoped_matchers(caller, list(silence.matchers))))
    validate(silence, now)
    _check_tenant(silence, request)
    over_limit = silence_refusal(request.app[CONFIG], current.muter.silences.by_id.values(), silence, now)
    if over_limit is not None:
        raise LimitReached(over_limit)
    writes = []
    old = current.muter.silences.by_id.get(silence.id) if silence.id else None
    if silence.id and (old is None or not owns_silence(caller, old.matchers)):
        raise LookupError(f"silence {silence.id} not found")
    if old is not None and can_update(old, silence, now):
        silence = replace(silence, updated_at=now)
    else:
        if old is not None and old.state(now) != "expired":
            writes.append(expire(old, now))
        silence = create(silence, now)
    _check_limits(request, silence, old, caller, now)
    writes.append(silence)
    await _write(request, writes)
    log.info("silence %s set by %s: %s", silence.id, silence.created_by,
             ",".join(str(m) for m in silence.matchers))
    return silence


async def post_silence(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
        if not isinstance(body, dict):
            raise ValueError("expected a silence object")
        silence = await save_silence(request, Silence.from_record(body), principal(request))
    except Forbidden as exc:
        return failure(403, str(exc))
    except LookupError as exc:
        return failure(404, str(exc.args[0]))
    except LimitReached as exc:
        return failure(400, str(exc))
    except (ValueError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
        return failure(400, f"invalid silence: {exc}")
    return answer({"silenceID": silence.id})


def find_silence(request: web.Request, silence_id: str, caller: Principal) -> Silence:
    """The silence, if the caller may see it; ``LookupError`` otherwise (another tenant's is not found,
    not forbidden: its existence is none of the caller's business)."""
    silence = state(request).muter.silences.by_id.get(silence_id)
    if silence is None or not owns_silence(caller, silence.matchers):
        raise LookupError(f"silence {silence_id} not found")
    return silence


async def expire_silence(request: web.Request, silence: Silence) -> None:
    """End a silence the caller found; raises ValueError if it already expired."""
    await _write(request, [expire(silence, time.time())])


def _find(request: web.Request) -> Silence:
    try:
        return find_silence(request, request.match_info["id"], principal(request))
    except LookupError as exc:
        raise web.HTTPNotFound(body=orjson.dumps(str(exc.args[0])), content_type="application/json") from None


async def get_silence(request: web.Request) -> web.Response:
    return answer(_find(request).to_api(time.time()))


async def delete_silence(request: web.Request) -> web.Response:
    try:
        await expire_silence(request, _find(request))
    except ValueError as exc:
        return failure(400, str(exc))
    return answer(None)


async def forget_expired(app: web.Application) -> None:
    """Delete (tombstone) silences expired longer than the retention. Every ingest replica may do
    it; deleting twice is harmless."""
    while True:
        config, muter = app[CONFIG], app[STATE].muter
        await asyncio.sleep(min(60.0, config.ingest.silence_retention / 2))
        horizon = time.time() - config.ingest.silence_retention
        stale = [s.id for s in muter.silences.by_id.values() if s.ends_at < horizon]
        if not stale:
            continue
        try:
            await app[WRITER].write(topics_for(config).silences, [(i.encode(), None) for i in stale])
        except BrokerUnavailable as exc:
            log.warning("could not delete %d expired silences: %s", len(stale), exc)
            continue
        for silence_id in stale:
            muter.silence_view.apply(silence_id, None)
        log.info("deleted %d silences expired before the retention", len(stale))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v2/silences", list_silences)
    app.router.add_post("/api/v2/silences", post_silence)
    app.router.add_get("/api/v2/silence/{id}", get_silence)
    app.router.add_delete("/api/v2/silence/{id}", delete_silence)

    async def collector(app: web.Application):  # type: ignore[no-untyped-def]
        task = asyncio.create_task(forget_expired(app))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(collector)
