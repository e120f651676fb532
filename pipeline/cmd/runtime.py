"""Process-wide tuning shared by the long-running processes (ingest and worker).

The worker keeps every active alert's state and every group in memory: hundreds of thousands of
objects that live for hours. With Python's default collector thresholds (700, 10, 10) the full
collections that walk all of them ran 40 times in a 100,000-alert burst and took 11.8 of the worker's
42 CPU-seconds (docs/architecture.md, "Throughput and where it goes"). Our own objects form almost no
reference cycles, so the young generations can be collected far less often and the oldest rarely.
"""

from __future__ import annotations

import gc

#: Allocations before a young collection, and young (then middle) collections before the next older one.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Collect cycles less often (see the module docstring); CPython's own rule still holds the oldest
    generation back until it grew by a quarter. ``python_gc_*`` on /metrics shows what the collector does."""
    gc.set_threshold(*GC_THRESHOLDS)
