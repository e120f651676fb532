"""Differential tests: the same timed scenarios played against a real Alertmanager and against alert-pipeline.

One Alertmanager (Debian's ``prometheus-alertmanager``) and one pipeline play every scenario at
once: each scenario has its own ``scenario`` label, its own branch of the route tree and its own
receivers, so scenarios never share a group and the whole suite takes one run (about 25 s). Both
systems deliver to loopback webhook receivers that record when each payload arrived. Each test then
compares one scenario:

- per receiver integration and ``groupKey``, the sequence of webhook payloads, field by field
  (times compared as instants: Go trims trailing zeros of fractional seconds), except
  ``notification_reason``, which Alertmanager does not send;
- the arrival time of each notification, relative to the scenario's start, within 1 s (alerts posted
  between two ticks are posted at least 1.5 s before the tick they belong to, so that the pipeline's
  own latency, 0.1-0.5 s on an idle machine, cannot move them to the next tick);
- our ``notification_reason`` against the reasons the scenario expects, and Alertmanager's number
  of notifications against the same expectation, so that a scenario in which neither system does
  anything cannot pass by accident.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest
from aiohttp import web

from pipeline.domain.models import fingerprint, format_time, parse_time
from pipeline.kafka.broker import LocalKafka
from tests.harness import Alertmanager, PipelineProcesses, Receiver, base_config, eventually

TOLERANCE = 1.0

pytestmark = pytest.mark.skipif(not shutil.which(Alertmanager.BINARY), reason="prometheus-alertmanager not installed")


@dataclass
class Step:
    """At ``at`` seconds into the scenario, post these alerts (labels only; ``scenario`` is added)."""

    at: float
    fire: list[dict[str, str]] = field(default_factory=list)
    resolve: list[dict[str, str]] = field(default_factory=list)
    #: Fired alerts start this many seconds before they are posted.
    age: float = 0.0


@dataclass
class Scenario:
    name: str
    #: The scenario's branch of the route tree; receiver names are local to the scenario.
    route: dict[str, Any]
    #: Receiver name -> its webhook configs (without url).
    receivers: dict[str, list[dict[str, Any]]]
    steps: list[Step]
    duration: float
    #: ``"<receiver>/<index>"`` -> our expected ``notification_reason`` of each notification, in order.
    reasons: dict[str, list[str]]


def a(name: str, **labels: str) -> dict[str, str]:
    return {"alertname": name, **labels}


TEAM = {"team": [{}]}
SCENARIOS = [
    Scenario("basic", {"receiver": "team"}, TEAM, [Step(0, fire=[a("A", pod="a"), a("A", pod="b")])], 4,
             {"team/0": ["first_notification"]}),
    Scenario("group-by", {"receiver": "team", "group_by": ["alertname", "instance"]}, TEAM,
             [Step(0, fire=[a("G", instance="i1"), a("G", instance="i1", pod="b"), a("G", instance="i2")])], 3,
             {"team/0": ["first_notification", "first_notification"]}),
    Scenario("new-alerts", {"receiver": "team"}, TEAM,
             [Step(0, fire=[a("N", pod="a")]), Step(2.5, fire=[a("N", pod="b")])], 5.5,
             {"team/0": ["first_notification", "new_alerts"]}),
    Scenario("resolve-some", {"receiver": "team"}, TEAM,
             [Step(0, fire=[a("R", pod="a"), a("R", pod="b")]), Step(2.5, resolve=[a("R", pod="a")])], 7,
             {"team/0": ["first_notification", "alerts_resolved"]}),
    Scenario("resolve-all", {"receiver": "team"}, TEAM,
             [Step(0, fire=[a("R")]), Step(2.5, resolve=[a("R")])], 6,
             {"team/0": ["first_notification", "all_resolved"]}),
    Scenario("resolved-in-wait", {"receiver": "team", "group_wait": "3s"}, TEAM,
             [Step(0, fire=[a("W")]), Step(0.5, resolve=[a("W")])], 4.5, {}),
    Scenario("resolved-in-wait-mixed", {"receiver": "team", "group_wait": "3s"}, TEAM,
             [Step(0, fire=[a("W", pod="a"), a("W", pod="b")]), Step(0.5, resolve=[a("W", pod="a")])], 5.5,
             {"team/0": ["first_notification"]}),
    # Not an exact multiple of group_interval: there Alertmanager races its own timer drift against
    # the notification log's timestamp and repeats at either tick (see docs/architecture.md).
    Scenario("repeat", {"receiver": "team", "group_interval": "1s", "repeat_interval": "2500ms"}, TEAM,
             [Step(0, fire=[a("P")])], 11, {"team/0": ["first_notification"] + ["repeat_interval"] * 3}),
    Scenario("repeat-rounded-up", {"receiver": "team", "group_interval": "2s", "repeat_interval": "3s"}, TEAM,
             [Step(0, fire=[a("P")])], 11, {"team/0": ["first_notification", "repeat_interval", "repeat_interval"]}),
    Scenario("send-resolved", {"receiver": "team"}, {"team": [{"send_resolved": False}, {}]},
             [Step(0, fire=[a("S", pod="a"), a("S", pod="b")]), Step(2.5, resolve=[a("S", pod="a")]),
              Step(4.5, resolve=[a("S", pod="b")])], 7,
             {"team/0": ["first_notification"],
              "team/1": ["first_notification", "alerts_resolved", "all_resolved"]}),
    Scenario("order-and-max-alerts", {"receiver": "team"}, {"team": [{"max_alerts": 3}, {}]},
             [Step(0, fire=[a("O", job="b", instance="1"), a("O", job="a", instance="2"), a("O", job="a"),
                            a("O", instance="0"), a("O", pod="x"), a("O", job="a", instance="2", extra="y"),
                            a("O", zone="z", pod="x")])], 3,
             {"team/0": ["first_notification"], "team/1": ["first_notification"]}),
    Scenario("continue", {"receiver": "team", "routes": [
        {"matchers": ["severity=critical"], "receiver": "pager", "continue": True},
        {"matchers": ["team=db"], "receiver": "db"},
        {"matchers": ['team=~"db|web"'], "receiver": "web"},
    ]}, {"team": [{}], "pager": [{}], "db": [{}], "web": [{}]},
        [Step(0, fire=[a("C1", severity="critical", team="db"), a("C2", team="web"), a("C3", severity="critical"),
                       a("C4", team="ops")])], 3,
        {"pager/0": ["first_notification"] * 2, "db/0": ["first_notification"], "web/0": ["first_notification"],
         "team/0": ["first_notification"]}),
    Scenario("matcher-forms", {"receiver": "team", "routes": [
        {"matchers": ['{tier=~"front.*", env!="dev"}'], "receiver": "front"},
        {"matchers": ['msg="say \\"hi\\", then go"'], "receiver": "quoted"},
        {"match": {"tier": "db"}, "match_re": {"env": "prod|stag.*"}, "receiver": "legacy"},
        {"matchers": ['tier!~"db|front.*"', "env = prod"], "receiver": "other"},
    ]}, {"team": [{}], "front": [{}], "quoted": [{}], "legacy": [{}], "other": [{}]},
        [Step(0, fire=[a("M1", tier="frontend", env="prod"), a("M2", tier="frontend", env="dev"),
                       a("M3", msg='say "hi", then go'), a("M4", tier="db", env="staging"),
                       a("M5", tier="cache", env="prod")])], 3,
        {name: ["first_notification"] for name in ("front/0", "team/0", "quoted/0", "legacy/0", "other/0")}),
    Scenario("inheritance", {"receiver": "team", "group_by": ["region"], "group_wait": "2s", "group_interval": "3s",
                             "routes": [{"matchers": ["tier=db"], "routes": [
                                 {"matchers": ["severity=page"], "receiver": "pager", "group_interval": "2s"}]}]},
             {"team": [{}], "pager": [{}]},
             [Step(0, fire=[a("I1", region="eu", tier="db"), a("I2", region="eu", tier="db"),
                            a("I3", region="us", tier="db", severity="page")]),
              Step(2.5, fire=[a("I4", region="us", tier="db", severity="page"), a("I5", region="eu", tier="db")])],
             6, {"team/0": ["first_notification", "new_alerts"], "pager/0": ["first_notification", "new_alerts"]}),
    Scenario("group-by-all", {"receiver": "team", "group_by": ["..."]}, TEAM,
             [Step(0, fire=[a("B", pod="a"), a("B", pod="b"), a("B2")])], 3, {"team/0": ["first_notification"] * 3}),
    Scenario("empty-group-by-inherits", {"receiver": "team", "group_by": ["scenario"], "routes": [
        {"matchers": ["kind=x"], "group_by": []}]}, TEAM,
        [Step(0, fire=[a("E1", kind="x"), a("E2", kind="x")])], 3, {"team/0": ["first_notification"]}),
    # The second alert comes after the first one's immediate flush, whatever the pipeline's latency
    # (up to 1.5 s), and 1.5 s before the tick it belongs to.
    Scenario("old-alert-skips-group-wait", {"receiver": "team", "group_wait": "3s", "group_interval": "3s"}, TEAM,
             [Step(0, fire=[a("Old", pod="a")], age=3600), Step(1.5, fire=[a("Old", pod="b")], age=3600)], 4.5,
             {"team/0": ["first_notification", "new_alerts"]}),
    Scenario("mute-time-interval", {"receiver": "team", "mute_time_intervals": ["always"]}, TEAM,
             [Step(0, fire=[a("T")])], 3.5, {}),
    Scenario("active-time-interval", {"receiver": "team", "active_time_intervals": ["tokyo-now"]}, TEAM,
             [Step(0, fire=[a("T")])], 2.5, {"team/0": ["first_notification"]}),
    Scenario("inactive-time-interval", {"receiver": "team", "active_time_intervals": ["never", "not-this-month"]},
             TEAM, [Step(0, fire=[a("T")])], 3.5, {}),
    Scenario("mute-never-active-always", {"receiver": "team", "mute_time_intervals": ["never"],
                                          "active_time_intervals": ["always"]}, TEAM,
             [Step(0, fire=[a("T")])], 2.5, {"team/0": ["first_notification"]}),
    Scenario("special-values", {"receiver": "team", "group_by": ["alertname", "msg"]}, TEAM,
             [Step(0, fire=[a("U", msg='tab\there "q" ü ✓ \\ end'), a("U", msg="two\nlines")])], 3,
             {"team/0": ["first_notification"] * 2}),
]


def time_intervals(now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Intervals that contain (or not) the whole run, whatever the day: built from the current time."""
    tokyo = now.astimezone(ZoneInfo("Asia/Tokyo"))
    minute = tokyo.hour * 60 + tokyo.minute
    start, end = (max(0, minute - 60), min(1440, minute + 60)) if 3 <= minute <= 1436 else (0, 1440)
    clock = "{:02d}:{:02d}".format
    other_month = now.month % 12 + 1 if now.day < 20 else (now.month + 5) % 12 + 1
    return {
        "time_intervals": [
            {"name": "always", "time_intervals": [{"weekdays": ["sunday:saturday"], "days_of_month": ["-31:-1"],
                                                   "months": ["january:december"], "location": "Asia/Tokyo"}]},
            {"name": "tokyo-now", "time_intervals": [{"times": [{"start_time": clock(*divmod(start, 60)),
                                                                 "end_time": clock(*divmod(end, 60))}],
                                                      "days_of_month": ["1:-1"], "location": "Asia/Tokyo"}]},
            {"name": "not-this-month", "time_intervals": [{"months": [str(other_month)]}]},
        ],
        # The deprecated top-level spelling, which both must still accept.
        "mute_time_intervals": [{"name": "never", "time_intervals": [{"years": ["2001:2002"]},
                                                                      {"weekdays": [], "months": ["may"]}]}],
    }


def scenario_branch(scenario: Scenario) -> dict[str, Any]:
    def rename(route: dict[str, Any]) -> dict[str, Any]:
        out = dict(route)
        if "receiver" in out:
            out["receiver"] = f"{scenario.name}-{out['receiver']}"
        if "routes" in out:
            out["routes"] = [rename(child) for child in route["routes"]]
        return out

    branch = rename(scenario.route)
    branch["matchers"] = [f'scenario="{scenario.name}"', *branch.get("matchers", [])]
    return branch


def routing_config(url: str, now: datetime) -> dict[str, Any]:
    """The route tree, receivers and time intervals shared by both systems; webhooks point at ``url``."""
    def webhook(name: str, index: int, options: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"{url}/{name}/{index}", **options}

    receivers = [{"name": name, "webhook_configs": [webhook(name, 0, {})]} for name in ("unrouted", "warmup")]
    for scenario in SCENARIOS:
        for local, configs in scenario.receivers.items():
            name = f"{scenario.name}-{local}"
            receivers.append({"name": name, "webhook_configs": [webhook(name, i, c) for i, c in enumerate(configs)]})
    return {
        "route": {"receiver": "unrouted", "group_by": ["scenario", "alertname"], "group_wait": "2s",
                  "group_interval": "2s", "repeat_interval": "1h",
                  "routes": [{"matchers": ['scenario="warmup"'], "receiver": "warmup", "group_wait": "0s"},
                             *(scenario_branch(s) for s in SCENARIOS)]},
        "receivers": receivers,
        **time_intervals(now),
    }


class TimedReceiver(Receiver):
    """The harness receiver, recording each payload with its arrival time."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, str, dict[str, Any]]] = []

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.arrivals.append((time.time(), request.path, orjson.loads(body)))
        return web.Response(text="ok")


@dataclass
class Run:
    """What both systems delivered, and when each scenario started."""

    start: float
    alertmanager: list[tuple[float, str, dict[str, Any]]]
    pipeline: list[tuple[float, str, dict[str, Any]]]


def alert_body(labels: dict[str, str], starts_at: str, ends_at: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"labels": labels, "annotations": {"summary": f"{labels['alertname']} happened"},
                            "startsAt": starts_at}
    if ends_at is not None:
        body["endsAt"] = ends_at
    return body


async def play(scenario: Scenario, start: float, post: Any) -> None:
    started: dict[str, str] = {}
    for step in scenario.steps:
        await asyncio.sleep(max(0.0, start + step.at - time.time()))
        now = time.time()
        alerts = []
        for labels in step.fire:
            labels = {**labels, "scenario": scenario.name}
            started[fingerprint(labels)] = format_time(now - step.age)
            alerts.append(alert_body(labels, started[fingerprint(labels)]))
        for labels in step.resolve:
            labels = {**labels, "scenario": scenario.name}
            alerts.append(alert_body(labels, started[fingerprint(labels)], format_time(now)))
        await post(alerts)


async def play_all(broker: LocalKafka, tmp: Path) -> Run:
    am_receiver, ap_receiver = await TimedReceiver().start(), await TimedReceiver().start()
    now = datetime.now(UTC)
    alertmanager = Alertmanager({"global": {"resolve_timeout": "5m"}, **routing_config(am_receiver.url, now)}, tmp)
    # Same externalURL in both payloads: ours is set to Alertmanager's.
    pipeline = PipelineProcesses(base_config(broker, tmp, **routing_config(ap_receiver.url, now),
                                             **{"global": {"resolve_timeout": "5m", "external_url": alertmanager.url}}),
                                 tmp)
    try:
        await asyncio.gather(alertmanager.start(), pipeline.start())
        async with aiohttp.ClientSession() as http:
            async def post(alerts: list[dict[str, Any]]) -> None:
                body = orjson.dumps(alerts)
                for url in (alertmanager.url, pipeline.ingest_url):
                    async with http.post(f"{url}/api/v2/alerts", data=body,
                                         headers={"Content-Type": "application/json"}) as response:
                        assert response.status == 200, await response.text()

            # Warm both paths end to end before the clock starts.
            await post([alert_body({"alertname": "Warmup", "scenario": "warmup"}, format_time(time.time()))])
            await eventually(lambda: am_receiver.arrivals and ap_receiver.arrivals, timeout=30)
            start = time.time() + 0.5
            await asyncio.gather(*(play(s, start, post) for s in SCENARIOS))
            # Past the last scenario's end by more than the tolerance, and before any next repeat.
            await asyncio.sleep(max(0.0, start + max(s.duration for s in SCENARIOS) + 1.5 - time.time()))
        return Run(start, am_receiver.arrivals, ap_receiver.arrivals)
    except BaseException:
        print(pipeline.logs(), (alertmanager.dir / "alertmanager.log").read_text()[-3000:])
        raise
    finally:
        alertmanager.stop()
        pipeline.stop()
        await am_receiver.stop()
        await ap_receiver.stop()


@pytest.fixture(scope="module")
def run(broker: LocalKafka, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return asyncio.run(play_all(broker, tmp_path_factory.mktemp("differential")))


def comparable(payload: dict[str, Any]) -> dict[str, Any]:
    """A payload with times as instants (Go and Python print fractions differently) and no reason."""
    def instant(value: str) -> float | None:
        parsed = parse_time(value, "time")
        return None if parsed is None else round(parsed, 3)

    out = {k: v for k, v in payload.items() if k != "notification_reason"}
    out["alerts"] = [{**alert, "startsAt": instant(alert["startsAt"]), "endsAt": instant(alert["endsAt"])}
                     for alert in payload["alerts"]]
    return out


def paths(scenario: Scenario) -> dict[str, str]:
    """The webhook paths of a scenario's receivers -> their local ``"<receiver>/<index>"`` names."""
    return {f"/{scenario.name}-{name}/{i}": f"{name}/{i}"
            for name, configs in scenario.receivers.items() for i in range(len(configs))}


def by_group(arrivals: list[tuple[float, str, dict[str, Any]]], names: dict[str, str],
             start: float) -> dict[tuple[str, str], list[tuple[float, dict[str, Any]]]]:
    groups: dict[tuple[str, str], list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    for at, path, payload in sorted(arrivals, key=lambda item: item[0]):
        if path in names:
            groups[(names[path], payload["groupKey"])].append((at - start, payload))
    return groups


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_same_notifications_as_alertmanager(run: Run, scenario: Scenario) -> None:
    names = paths(scenario)
    ours, theirs = by_group(run.pipeline, names, run.start), by_group(run.alertmanager, names, run.start)

    def counts(groups: dict[tuple[str, str], list[Any]]) -> dict[str, int]:
        total: dict[str, int] = defaultdict(int)
        for (path, _), notifications in groups.items():
            total[path] += len(notifications)
        return dict(total)

    assert counts(theirs) == {path: len(reasons) for path, reasons in scenario.reasons.items()}, (
        "Alertmanager itself did not behave as the scenario expects",
        {k: [round(t, 3) for t, _ in v] for k, v in theirs.items()})
    assert sorted(ours) == sorted(theirs)
    for key, expected in theirs.items():
        got = ours[key]
        assert [comparable(p) for _, p in got] == [comparable(p) for _, p in expected], key
        for (our_time, _), (their_time, _) in zip(got, expected, strict=True):
            print(f"{scenario.name} {key[0]}: Alertmanager {their_time:.3f} s, pipeline {our_time:.3f} s")
            assert abs(our_time - their_time) <= TOLERANCE, (key, [t for t, _ in got], [t for t, _ in expected])
    reasons: dict[str, list[str]] = defaultdict(list)
    for _, path, payload in sorted(run.pipeline, key=lambda item: item[0]):
        if path in names:
            reasons[names[path]].append(payload["notification_reason"])
    assert dict(reasons) == scenario.reasons


def test_nothing_unrouted_and_warmup_identical(run: Run) -> None:
    assert [p for _, path, p in run.alertmanager if path.startswith("/unrouted")] == []
    assert [p for _, path, p in run.pipeline if path.startswith("/unrouted")] == []
    warmup = {"/warmup/0": "warmup/0"}
    ours, theirs = by_group(run.pipeline, warmup, run.start), by_group(run.alertmanager, warmup, run.start)
    assert {k: [comparable(p) for _, p in v] for k, v in ours.items()} == {
        k: [comparable(p) for _, p in v] for k, v in theirs.items()}
