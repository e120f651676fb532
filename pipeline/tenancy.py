"""Which tenants own a namespace: the ``tenants:`` globs of the config.

An alert's ``namespace`` label picks every tenant whose globs match it; an alert without one is
cluster-level and belongs to no tenant (only the global route sees it).
"""

from __future__ import annotations

import fnmatch
import re
from functools import lru_cache

from pipeline.config import Config

NAMESPACE_LABEL = "namespace"


class TenantResolver:
    def __init__(self, config: Config):
        self._patterns = [
            (tenant.name, re.compile("|".join(fnmatch.translate(g) for g in tenant.namespaces)))
            for tenant in config.tenants
            if tenant.namespaces
        ]
        self.tenants_of = lru_cache(maxsize=65536)(self._tenants_of)

    def _tenants_of(self, namespace: str) -> tuple[str, ...]:
        return tuple(name for name, pattern in self._patterns if pattern.match(namespace))

    def for_labels(self, labels: dict[str, str]) -> tuple[str, ...]:
        namespace = labels.get(NAMESPACE_LABEL)
        return self.tenants_of(namespace) if namespace else ()
