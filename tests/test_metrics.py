"""Metrics: a real Prometheus scrapes the ingest and the worker, and every metric the Grafana
dashboard queries is exported by one of them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse

import yaml
from prometheus_client.parser import text_string_to_metric_families

from pipeline.kafka.broker import free_port
from tests.harness import ROOT, PipelineProcesses, _get, eventually
from tests.test_end_to_end import post


def families(url: str) -> set[str]:
    _, text = _get(url)
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":  # listed without samples until a label set is first used
            names.add(f"{family.name}_total")
        names.update(sample.name for sample in family.samples)
    return names


async def test_prometheus_scrapes_what_the_dashboard_queries(make_config, start_pipeline, receiver, tmp_path):
    config = make_config(receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/hook"}]}])
    pipeline: PipelineProcesses = await start_pipeline(config)
    assert (await post(pipeline.ingest_url, [{"labels": {"alertname": "Up", "namespace": "a"}}]))[0] == 200
    await eventually(lambda: receiver.payloads("/hook"))

    port = free_port()
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": "alert-pipeline-ingest", "static_configs": [{"targets": [config["ingest"]["listen"]]}]},
            {"job_name": "alert-pipeline-worker",
             "static_configs": [{"targets": [config["worker"]["metrics_listen"]]}]},
        ],
    }))
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (make test-deps)"
    with open(tmp_path / "prometheus.log", "ab") as log:
        prometheus = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        def query(expr: str) -> list[dict]:
            status, text = _get(f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expr)}")
            return json.loads(text)["data"]["result"] if status == 200 else []

        await eventually(lambda: len([r for r in query("up") if r["value"][1] == "1"]) == 2, timeout=60)
        received = await eventually(lambda: query("sum(alert_pipeline_alerts_received_total)"), timeout=30)
        assert float(received[0]["value"][1]) >= 1
        sent = await eventually(lambda: query('sum by (tenant) (alert_pipeline_notifications_sent_total)'))
        assert sent[0]["metric"] == {"tenant": "global"} and float(sent[0]["value"][1]) >= 1
    finally:
        prometheus.terminate()
        prometheus.wait(10)

    exported = families(f"{pipeline.ingest_url}/metrics") | families(pipeline.worker_metrics_url)
    queries = dashboard_queries(json.loads((ROOT / "deploy/grafana/alert-pipeline.json").read_text()))
    assert len(queries) >= 15
    for query in queries:  # every query names at least one metric, and only exported ones
        named = set(re.findall(r"alert_pipeline_[a-z_]+", query))
        assert named and named <= exported, f"{query!r} queries unknown metrics: {named - exported}"


def dashboard_queries(dashboard: dict) -> list[str]:
    """Every panel's query (rows' nested panels too) and every template variable's query."""
    panels = [*dashboard["panels"], *(p for row in dashboard["panels"] for p in row.get("panels", []))]
    return ([target["expr"] for panel in panels for target in panel.get("targets", [])]
            + [v["query"] for v in dashboard.get("templating", {}).get("list", []) if v.get("type") == "query"])
