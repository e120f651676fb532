"""``make bench``: throughput numbers, printed. Not a test: nothing here passes or fails on speed.

Micro-benchmarks measure one stage's code on one core; ``tests/bench_compare.py`` runs the real ingest
and worker processes against a local Kafka side by side with Debian's Alertmanager (issue 10's workload).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import orjson

from agents.dedup import decide
from pipeline.domain.config import parse_config
from pipeline.domain.limits import Limits
from pipeline.domain.models import Alert, fingerprint
from pipeline.domain.routing import RoutingTable
from pipeline.domain.tenancy import TenantResolver
from pipeline.ingest.alertmanager import parse_alerts_body
from tests.bench_ui import ui_benchmark

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
    from pipeline.domain.kube.payloads import normalise_event, parse_payload

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
    from pipeline.domain.kube.payloads import normalise_audit_event, parse_payload

    fixture = parse_payload((FIXTURES / "audit-eventlist.json").read_bytes(), normalise_audit_event).items
    service_read = fixture[2]
    routine = [{**service_read, "verb": verb, "objectRef": {"resource": resource, "namespace": f"ns-{i % 9}"},
                "auditID": f"routine-{i}"}
               for i, (verb, resource) in enumerate([("watch", "pods"), ("get", "configmaps"), ("list", "nodes"),
                                                      ("update", "leases"), ("get", "endpoints")] * 20)]
    return list(islice(cycle(routine + fixture), 10_000))  # about 6% make an alert


def bench_event_rules() -> list[Row]:
    """Events/s of one worker process (one core) with the default event and audit rule sets."""
    from pipeline.domain.kube.audit_rules import load_audit_rules
    from pipeline.domain.kube.event_rules import load_event_rules
    from pipeline.domain.kube.loader import default_files
    from pipeline.domain.kube.payloads import normalise_audit_event, normalise_event, parse_payload

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


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>12,.0f}/s"


def micro(name: str, count: int, work: Callable[[], None]) -> None:
    started = time.perf_counter()
    work()
    print(f"{name:<48}{rate(count, time.perf_counter() - started)}")


def sample_alerts(count: int, namespaces: int = 50) -> list[dict]:
    return [{"labels": {"alertname": f"Alert{i % 20}", "namespace": f"team-{i % namespaces}", "pod": f"pod-{i}",
                        "severity": "warning", "job": "kube-state-metrics"},
             "annotations": {"summary": f"pod-{i} is crash looping", "runbook_url": "https://runbooks/x"}}
            for i in range(count)]


def micro_benchmarks() -> None:
    print("micro-benchmarks (one core, no I/O)")
    alerts = sample_alerts(20_000)
    micro("fingerprint", len(alerts), lambda: [fingerprint(a["labels"]) for a in alerts])
    body = orjson.dumps(alerts)
    now = time.time()
    limits = Limits(max_alerts_per_request=len(alerts))  # one body of all of them
    micro("ingest: parse + validate + encode records", len(alerts), lambda: [
        orjson.dumps(a.to_record()) for a in parse_alerts_body(orjson.loads(body), now, 300, 3600, limits).alerts])
    parsed = parse_alerts_body(alerts, now, 300, 3600, limits).alerts
    records = [orjson.dumps(a.to_record()) for a in parsed]

    def dedup_repeats() -> None:
        states = {a.fingerprint: decide(None, a, now)[0] for a in parsed}
        for raw in records:
            incoming = Alert.from_record(orjson.loads(raw))
            decide(states[incoming.fingerprint], incoming, now + 1)

    micro("dedup: decode + decide (repeats)", len(records), dedup_repeats)
    config = parse_config({
        "route": {"receiver": "r", "group_by": ["alertname", "namespace"], "routes": [
            {"matchers": ['severity="critical"'], "receiver": "r"},
            {"matchers": ['alertname=~"Alert1.*"'], "receiver": "r", "continue": True},
        ]},
        "receivers": [{"name": "r"}],
        "tenants": [{"name": f"t{i}", "namespaces": [f"team-{i}", f"team-{i}-*"], "receivers": [{"name": "x"}]}
                    for i in range(50)],
    })
    table, tenants = RoutingTable(config), TenantResolver(config)

    def route_all() -> None:
        for alert in parsed:
            for tenant in ("global", *tenants.for_labels(alert.labels)):
                for route in table.match(tenant, alert.labels):
                    route.group_key(route.group_labels(alert.labels))

    micro("route: tenants + route trees + group keys", len(parsed), route_all)


def main() -> None:
    import argparse

    from tests.bench_compare import compare

    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--quick", action="store_true", help="only the small size, no steady state")
    parser.add_argument("--no-micro", action="store_true", help="skip the one-core micro-benchmarks")
    args = parser.parse_args()
    print(f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (numbers scale with a free core)")
    if not args.no_micro:
        micro_benchmarks()
        for name, value, unit in bench_event_rules():
            print(f"{name}: {value:,.0f} {unit}")
    asyncio.run(compare(quick=args.quick))
    asyncio.run(ui_benchmark())


if __name__ == "__main__":
    main()
