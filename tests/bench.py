"""``make bench``: throughput numbers, printed (never asserted: speed depends on the machine).

Each benchmark is a function returning ``(name, value, unit)`` rows; add yours to ``BENCHMARKS``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import orjson

Row = tuple[str, float, str]
FIXTURES = Path(__file__).parent / "fixtures" / "kube"


def _rate(work: Callable[[], int], seconds: float = 2.0) -> float:
    """Items per second of ``work`` (which returns how many items it did), over about ``seconds``."""
    work()  # warm up caches
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        done += work()
    return done / (time.perf_counter() - started)


def _event_mix() -> list[dict[str, Any]]:
    """A cluster's event stream: mostly Normal lifecycle events, some warnings the rules catch."""
    from pipeline.ingest.kube import normalise_event, parse_payload

    warnings = [e for name in ("events-flat.ndjson", "events-nested.ndjson", "events-array.json",
                               "events-k8s-io-v1.json")
                for e in parse_payload((FIXTURES / name).read_bytes(), normalise_event).items]
    template = warnings[1]  # a Normal "Pulled" event
    normal = [{**template, "reason": reason, "message": f"{reason} container app",
               "involvedObject": {**template["involvedObject"], "name": f"app-{i}", "namespace": f"ns-{i % 7}"}}
              for i, reason in enumerate(["Scheduled", "Pulling", "Pulled", "Created", "Started", "Killing",
                                          "SuccessfulCreate", "ScalingReplicaSet", "Sync", "LeaderElection"] * 3)]
    return normal + warnings  # about a quarter warnings


def bench_event_rules() -> list[Row]:
    """Events/s of one worker process (one core) with the default event and audit rule sets."""
    from pipeline.ingest.kube import normalise_audit_event, normalise_event, parse_payload
    from pipeline.rules.auditing import load_audit_rules
    from pipeline.rules.events import load_event_rules
    from pipeline.rules.loader import default_files

    event_rules = load_event_rules(default_files("events"))
    audit_rules = load_audit_rules(default_files("auditing"))
    events = list(islice(cycle(_event_mix()), 10_000))
    records = [orjson.dumps(e) for e in events]
    audits = list(islice(cycle(parse_payload((FIXTURES / "audit-eventlist.json").read_bytes(),
                                             normalise_audit_event).items), 10_000))
    audit_records = [orjson.dumps(e) for e in audits]
    now, none = time.time(), lambda ns: ()
    alerts = sum(event_rules.alert(e, now, 300.0, none) is not None for e in events)

    def evaluate_only() -> int:
        for event in events:
            event_rules.alert(event, now, 300.0, none)
        return len(events)

    def full_record_path(rules_alerts: Callable[[dict[str, Any]], list[Any]], normalise, raw: list[bytes]) -> int:
        for record in raw:
            for item in parse_payload(record, normalise).items:
                for alert in rules_alerts(item):
                    orjson.dumps(alert.to_record())
        return len(raw)

    def event_alerts(event: dict[str, Any]) -> list[Any]:
        alert = event_rules.alert(event, now, 300.0, none)
        return [] if alert is None else [alert]

    return [
        (f"event rules: evaluate ({len(event_rules)} rules, {alerts / len(events):.0%} of events alert)",
         _rate(evaluate_only), "events/s"),
        ("event rules: decode + evaluate + encode alerts (worker path)",
         _rate(lambda: full_record_path(event_alerts, normalise_event, records)), "events/s"),
        (f"audit rules: decode + evaluate + encode alerts ({len(audit_rules)} rules)",
         _rate(lambda: full_record_path(lambda e: audit_rules.alerts(e, now, 300.0, none), normalise_audit_event,
                                        audit_records)), "events/s"),
    ]


BENCHMARKS: list[Callable[[], list[Row]]] = [bench_event_rules]


def main() -> None:
    for benchmark in BENCHMARKS:
        for name, value, unit in benchmark():
            print(f"{name}: {value:,.0f} {unit}")


if __name__ == "__main__":
    main()
