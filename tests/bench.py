"""``make bench``: throughput numbers, printed (never asserted: speed depends on the machine).

Each benchmark is a function returning ``(name, value, unit)`` rows; add yours to ``BENCHMARKS``.
"""

from __future__ import annotations

import os
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


def _event_mix(unique_warnings: bool = False) -> list[dict[str, Any]]:
    """A cluster's event stream: mostly Normal lifecycle events, some warnings the rules catch.

    With ``unique_warnings`` each warning is about a different pod (no repeats: the worst case).
    """
    from pipeline.ingest.kube import normalise_event, parse_payload

    warnings = [e for name in ("events-flat.ndjson", "events-nested.ndjson", "events-array.json",
                               "events-k8s-io-v1.json")
                for e in parse_payload((FIXTURES / name).read_bytes(), normalise_event).items]
    template = warnings[1]  # a Normal "Pulled" event
    normal = [{**template, "reason": reason, "message": f"{reason} container app",
               "involvedObject": {**template["involvedObject"], "name": f"app-{i}", "namespace": f"ns-{i % 7}"}}
              for i, reason in enumerate(["Scheduled", "Pulling", "Pulled", "Created", "Started", "Killing",
                                          "SuccessfulCreate", "ScalingReplicaSet", "Sync", "LeaderElection"] * 3)]
    mix = list(islice(cycle(normal + warnings), 10_000))  # about a quarter warnings
    if unique_warnings:
        mix = [{**e, "involvedObject": {**e["involvedObject"], "name": f"pod-{i}"}} for i, e in enumerate(mix)]
    return mix


def _audit_mix() -> list[dict[str, Any]]:
    """An apiserver's audit stream: mostly components reading and watching, a few requests the rules catch."""
    from pipeline.ingest.kube import normalise_audit_event, parse_payload

    fixture = parse_payload((FIXTURES / "audit-eventlist.json").read_bytes(), normalise_audit_event).items
    service_read = fixture[2]
    routine = [{**service_read, "verb": verb, "objectRef": {"resource": resource, "namespace": f"ns-{i % 9}"},
                "auditID": f"routine-{i}"}
               for i, (verb, resource) in enumerate([("watch", "pods"), ("get", "configmaps"), ("list", "nodes"),
                                                      ("update", "leases"), ("get", "endpoints")] * 20)]
    return list(islice(cycle(routine + fixture), 10_000))  # about 6% make an alert


def bench_event_rules() -> list[Row]:
    """Events/s of one worker process (one core) with the default event and audit rule sets."""
    from pipeline.ingest.kube import normalise_audit_event, normalise_event, parse_payload
    from pipeline.rules.auditing import load_audit_rules
    from pipeline.rules.events import load_event_rules
    from pipeline.rules.loader import default_files

    event_rules = load_event_rules(default_files("events"))
    audit_rules = load_audit_rules(default_files("auditing"))
    now, none = time.time(), lambda ns: ()
    events = _event_mix()

    def evaluate_only() -> int:
        for event in events:
            event_rules.alert(event, now, 300.0, none)
        return len(events)

    def worker_path(alerts_of: Callable[[dict[str, Any]], list[Any]], normalise, items: list[dict]) -> Callable:
        """What the source agent does per record: decode, normalise, evaluate, encode each alert."""
        raw = [orjson.dumps(item) for item in items]

        def run() -> int:
            for record in raw:
                for item in parse_payload(record, normalise).items:
                    for alert in alerts_of(item):
                        orjson.dumps(alert.to_record())
            return len(raw)

        return run

    def event_alerts(event: dict[str, Any]) -> list[Any]:
        alert = event_rules.alert(event, now, 300.0, none)
        return [] if alert is None else [alert]

    def audit_alerts(event: dict[str, Any]) -> list[Any]:
        return audit_rules.alerts(event, now, 300.0, none)

    alerting = sum(bool(event_alerts(e)) for e in events) / len(events)
    audits = _audit_mix()
    audit_alerting = sum(bool(audit_alerts(dict(e))) for e in audits) / len(audits)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return [
        (f"event rules: evaluate only ({len(event_rules)} default rules, {alerting:.0%} of events alert; "
         f"load average {load})", _rate(evaluate_only), "events/s"),
        ("event rules: worker path, decode + evaluate + encode alerts", _rate(
            worker_path(event_alerts, normalise_event, events)), "events/s"),
        ("event rules: worker path, every warning about a new object", _rate(
            worker_path(event_alerts, normalise_event, _event_mix(unique_warnings=True))), "events/s"),
        (f"audit rules: worker path ({len(audit_rules)} default rules, {audit_alerting:.0%} of events alert)",
         _rate(worker_path(audit_alerts, normalise_audit_event, audits)), "events/s"),
    ]


BENCHMARKS: list[Callable[[], list[Row]]] = [bench_event_rules]


def main() -> None:
    for benchmark in BENCHMARKS:
        for name, value, unit in benchmark():
            print(f"{name}: {value:,.0f} {unit}")


if __name__ == "__main__":
    main()
