"""The delivery queue sizes of the workers, read from their metrics (``alert_pipeline_delivery_queued``).

Queues live in the workers' memory, not on Kafka, so the ingest asks the workers: each URL of
``ingest.worker_metrics`` is resolved to every address its host has (a headless Service names every
worker pod) and each address's ``/metrics`` is read. The answer is kept for a few seconds, so that
status requests cost the workers one scrape per interval, whatever their number.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from urllib.parse import urlsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

QUEUED_METRIC = "alert_pipeline_delivery_queued"
#: How long a reading is used before the workers are asked again.
CACHE_SECONDS = 2.0
SCRAPE_TIMEOUT = 2.0

QueueSizes = Counter[tuple[str, str, str]]


async def _addresses(url: str) -> list[str]:
    """``url`` once per address of its host (an IP address stays as it is)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    hosts = dict.fromkeys(f"[{info[4][0]}]" if info[0] == socket.AF_INET6 else info[4][0] for info in infos)
    return [parts._replace(netloc=f"{host}:{port}").geturl() for host in hosts]


def queue_sizes(text: str) -> QueueSizes:
    sizes: QueueSizes = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == QUEUED_METRIC:
                labels = sample.labels
                sizes[(labels["tenant"], labels["receiver"], labels["integration"])] += int(sample.value)
    return sizes


class WorkerQueues:
    """Sums the queue gauges of every worker the configured URLs name."""

    def __init__(self) -> None:
        self._cached: tuple[float, tuple[str, ...], QueueSizes | None] = (0.0, (), None)

    async def read(self, http: aiohttp.ClientSession, urls: list[str]) -> QueueSizes | None:
        """The queue sizes, or ``None`` when no worker URL is configured or none answered."""
        at, cached_urls, sizes = self._cached
        if tuple(urls) == cached_urls and time.monotonic() - at < CACHE_SECONDS:
            return sizes
        sizes = await self._scrape(http, urls) if urls else None
        self._cached = (time.monotonic(), tuple(urls), sizes)
        return sizes

    async def _scrape(self, http: aiohttp.ClientSession, urls: list[str]) -> QueueSizes | None:
        targets: list[str] = []
        for url in urls:
            try:
                targets += await _addresses(url)
            except OSError as exc:
                log.warning("cannot resolve worker metrics URL %s: %s", url, exc)
        texts = await asyncio.gather(*(self._get(http, target) for target in targets))
        answered = [text for text in texts if text is not None]
        if not answered:
            return None
        total: QueueSizes = Counter()
        for text in answered:
            total.update(queue_sizes(text))
        return total

    @staticmethod
    async def _get(http: aiohttp.ClientSession, url: str) -> str | None:
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)) as response:
                return await response.text() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("cannot read worker metrics %s: %s", url, exc)
            return None
