"""The alert a rule makes: firing from now until now + ``resolve_timeout``, as Prometheus' alerts are.

Kubernetes does not tell when a warning is over; the alert ends on its own unless the event comes
again. ``timeout=True`` marks that end as ours (not the sender's), so that a repeat pushes it on.
"""

from __future__ import annotations

from functools import lru_cache

from pipeline.domain.models import Alert, fingerprint


@lru_cache(maxsize=16384)
def _fingerprint(items: tuple[tuple[str, str], ...]) -> str:
    return fingerprint(dict(items))


def rule_alert(labels: dict[str, str], annotations: dict[str, str], now: float, resolve_timeout: float,
               source: str) -> Alert:
    """Empty values are dropped (as Alertmanager does); the fingerprint of a repeated label set is
    remembered, since repeats are the common case and hashing label by label is slow in Python."""
    labels = {k: v for k, v in labels.items() if v}
    return Alert(labels=labels, annotations={k: v for k, v in annotations.items() if v}, starts_at=now,
                 ends_at=now + resolve_timeout, updated_at=now, timeout=True,
                 fingerprint=_fingerprint(tuple(labels.items())), source=source, received_at=now)
