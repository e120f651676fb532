"""Where the time went in a bench run: each hop's ``alert_pipeline_stage_seconds``, from every process."""

from __future__ import annotations

import urllib.request

from tests.harness import PipelineProcesses

HOPS = ("ingest", "dedup", "dispatch", "flush", "deliver")


def hop_lines(processes: list[PipelineProcesses]) -> list[str]:
    """Where the time went, from every process's ``alert_pipeline_stage_seconds``: per hop, how many
    were observed, their mean and the bucket bound under which 50% and 99% fell."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, dict[float, float]] = {hop: {} for hop in HOPS}
    sums: dict[str, float] = dict.fromkeys(HOPS, 0.0)
    urls = [f"{processes[0].ingest_url}/metrics", *(p.worker_metrics_url for p in processes)]
    for url in urls:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                hop = sample.labels.get("stage")
                if family.name != "alert_pipeline_stage_seconds" or hop not in counts:
                    continue
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    counts[hop][bound] = counts[hop].get(bound, 0.0) + sample.value
                elif sample.name.endswith("_sum"):
                    sums[hop] += sample.value

    def quantile(buckets: dict[float, float], q: float) -> str:
        total = buckets.get(float("inf"), 0.0)
        bound = next((b for b in sorted(buckets) if buckets[b] >= q * total), float("inf"))
        return f"<{bound:g} s" if bound != float("inf") else "> last bucket"

    parts = [f"{hop} {n:,.0f}x mean {sums[hop] / n:.3f} s p50 {quantile(counts[hop], 0.5)} p99 "
             f"{quantile(counts[hop], 0.99)}" for hop in HOPS if (n := counts[hop].get(float("inf"), 0.0))]
    return ["    hops (alert_pipeline_stage_seconds): " + "; ".join(parts)]
