"""What the incident tools (PagerDuty, Opsgenie) share: one incident per aggregation group."""

from __future__ import annotations

import hashlib


def incident_key(group_key: str) -> str:
    """The incident's id, as Alertmanager derives it: SHA-256 of the group key, so that each group's
    firing and resolved notifications open and close the same incident."""
    return hashlib.sha256(group_key.encode()).hexdigest()
