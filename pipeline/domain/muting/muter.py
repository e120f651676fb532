"""Muting: silences and inhibition together, as Alertmanager's notification pipeline applies them.

See docs/architecture.md, Muting.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from pipeline.domain.config import GLOBAL_TENANT, Config
from pipeline.domain.models import parse_time
from pipeline.domain.muting.inhibit import Inhibitor, compile_rules
from pipeline.domain.muting.silence import SilenceIndex
from pipeline.domain.tenancy import TenantResolver


class View(Protocol):
    """A view of a compacted topic, key -> latest value (``pipeline/kafka/compacted.py``)."""

    items: dict[str, Any]
    caught_up: asyncio.Event

    @property
    def started(self) -> bool: ...

    def listen(self, listener: Callable[[str, Any, Any], None]) -> None: ...

    def apply(self, key: str, value: Any) -> None: ...

    def restart(self) -> None: ...

    def idle(self) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Muter:
    """Answers what is muted, from the views of ``silences`` and ``alerts.deduped``.

    With ``sources_only`` (the workers) the alert view keeps only the alerts that are a source of some
    inhibit rule, so a worker's memory grows with those, not with every alert; the ingest keeps all
    of them for the API.
    """

    def __init__(self, config: Config, silence_view: View, alert_view: View, sources_only: bool = False):
        """``alert_view`` keeps, with ``sources_only``, the records :meth:`is_source` says (the Kafka side
        builds both views: ``pipeline/kafka/muting.py``)."""
        self.sources_only = sources_only
        self.silence_view = silence_view
        self.alert_view = alert_view
        self.silences = SilenceIndex()
        self._version = 0
        self._boundaries: list[float] = []
        self.silence_view.listen(self.silences.on_change)
        self.silence_view.listen(lambda key, old, new: self._changed(new, "startsAt", "endsAt"))
        self.alert_view.listen(lambda fp, old, new: self.inhibitor.on_change(fp, old, new))
        self.alert_view.listen(lambda fp, old, new: self._changed(new, "endsAt"))
        self.reload(config)

    def reload(self, config: Config) -> None:
        """Recompile the inhibit rules of a new config and re-index the source alerts for them (a view
        that kept only the old rules' sources is read again)."""
        self.tenants = TenantResolver(config)
        self.scheduled = config.scheduled_silences
        self.inhibitor = Inhibitor(compile_rules(config), self.tenants.for_labels)
        self._version += 1
        if self.sources_only and self.alert_view.started:
            self._follow_sources()
        else:
            self.inhibitor.load(self.alert_view.items)

    def _follow_sources(self) -> None:
        """A worker's alert view reads ``alerts.deduped`` again for the rules in force, or, with no rule,
        not at all: it would read and decode every change of every alert only to drop it."""
        if self.inhibitor.rules:
            self.alert_view.restart()
        else:
            self.alert_view.idle()

    def is_source(self, record: Any) -> bool:
        labels = record.get("labels") if isinstance(record, dict) else None
        return isinstance(labels, dict) and self.inhibitor.is_source(labels)

    async def start(self) -> None:
        await self.silence_view.start()
        if self.sources_only and not self.inhibitor.rules:
            self.alert_view.idle()
        else:
            await self.alert_view.start()

    async def stop(self) -> None:
        await self.silence_view.stop()
        await self.alert_view.stop()

    @property
    def ready(self) -> bool:
        return self.silence_view.caught_up.is_set() and self.alert_view.caught_up.is_set()

    def scopes(self, labels: dict[str, str]) -> list[str]:
        """Every notification scope an alert reaches: the global route and each of its tenants."""
        return [GLOBAL_TENANT, *self.tenants.for_labels(labels)]

    def status(self, labels: dict[str, str], tenants: Iterable[str], now: float) -> tuple[list[str], list[str]]:
        """``(silencedBy, inhibitedBy)``: the silence ids (and names of the config's Notification Manager
        Silences) and inhibiting alert fingerprints."""
        tenants = list(tenants)
        silenced = self.silences.muting(labels, tenants, now)
        if self.scheduled:
            moment = datetime.fromtimestamp(now, UTC)
            silenced += sorted(s.name for s in self.scheduled
                               if any(s.mutes(labels, tenant, moment) for tenant in tenants))
        return silenced, self.inhibitor.inhibited_by(labels, tenants, now)

    def _changed(self, record: Any, *times: str) -> None:
        """A silence or a source alert changed: decisions made before are stale, and so will be those made
        before the record's times (a silence starting or ending, a source alert ceasing to fire)."""
        self._version += 1
        if isinstance(record, dict):
            for name in times:
                with contextlib.suppress(ValueError):
                    moment = parse_time(record.get(name), name)
                    if moment is not None:
                        heapq.heappush(self._boundaries, moment)

    def epoch(self, now: float) -> int:
        """A number that changes whenever a mute decision made before may differ now: a silence or source
        alert changed, or one of their start or end times passed. Decisions cached under the same epoch
        stay valid. Notification Manager's scheduled silences follow a cron schedule: with any, every
        call is a new epoch (nothing is cached)."""
        while self._boundaries and self._boundaries[0] <= now:
            heapq.heappop(self._boundaries)
            self._version += 1
        if self.scheduled:
            self._version += 1
        return self._version

    def mutes(self, labels: dict[str, str], tenant: str, now: float) -> bool:
        """Whether a silence or an inhibition mutes these labels in ``tenant``'s notifications."""
        silenced, inhibited = self.status(labels, (tenant,), now)
        return bool(silenced or inhibited)
