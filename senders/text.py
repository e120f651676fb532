"""Fitting rendered text into a channel's message size limit: truncate it, or split it into messages.

Limits are in characters for some channels (Telegram, Discord, Slack) and in UTF-8 bytes for others
(DingTalk, WeCom, Feishu), where a CJK character costs three: ``measure`` says which.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.domain.models import Notification

Measure = Callable[[str], int]

#: Appended to truncated text so that a reader knows there was more.
ELLIPSIS = "…"


def chars(text: str) -> int:
    return len(text)


def utf8_bytes(text: str) -> int:
    return len(text.encode())


def _cut(text: str, limit: int, measure: Measure) -> int:
    """The longest prefix length of ``text`` that fits ``limit``, never splitting a character."""
    if measure is chars:
        return min(len(text), limit)
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if measure(text[:mid]) <= limit:
            low = mid
        else:
            high = mid - 1
    return low


def truncate(text: str, limit: int, measure: Measure = chars) -> str:
    """``text`` if it fits, else its longest fitting prefix followed by an ellipsis."""
    if measure(text) <= limit:
        return text
    return text[:_cut(text, limit - measure(ELLIPSIS), measure)] + ELLIPSIS


def split(text: str, limit: int, measure: Measure = chars) -> list[str]:
    """Pieces that each fit ``limit``, cut at line ends where possible so no alert is lost or garbled.

    A single line longer than the limit is cut mid-line (at a character boundary).
    """
    pieces: list[str] = []
    rest = text
    while measure(rest) > limit:
        end = _cut(rest, limit, measure)
        newline = rest.rfind("\n", 0, end + 1)
        if newline > 0:
            end = newline
        pieces.append(rest[:end].rstrip("\n"))
        rest = rest[end:].lstrip("\n")
    if rest or not pieces:
        pieces.append(rest)
    return pieces


def text_line(notification: Notification) -> str:
    """``[tenant/receiver] FIRING 2 alerts group={...}: alertname ns summary; ...``"""
    parts = []
    for alert in notification.alerts:
        labels, annotations = alert["labels"], alert["annotations"]
        summary = annotations.get("summary") or annotations.get("message") or annotations.get("description", "")
        where = labels.get("namespace", "cluster")
        parts.append(f"{alert['status']}:{labels.get('alertname', '?')}@{where}" + (f" {summary}" if summary else ""))
    return (f"[{notification.tenant}/{notification.receiver}] {notification.status.upper()} "
            f"{len(notification.alerts)} alert(s) {notification.group_key} ({notification.reason}): "
            + "; ".join(parts))
