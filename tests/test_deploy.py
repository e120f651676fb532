"""The Helm chart and the image: what `make deploy-check` (helm lint, kubeconform) cannot see.

The chart's config is one the pipeline loads, its Strimzi topics are exactly the topics the processes
use (kubeconform has no schema for Strimzi's kinds), workers follow the partition count, and the image
the chart names is built from the Dockerfile (buildah, `make image`) and runs.
"""

from __future__ import annotations

import re
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.domain.config import Config, parse_config
from pipeline.kafka.topics import topics_for
from tests.harness import ROOT

CHART = ROOT / "deploy/helm/alert-pipeline"
MULTI_TENANT = CHART / "ci/multi-tenant-values.yaml"
HELM = ROOT / ".tools/bin/helm"


def render(*args: str) -> dict[tuple[str, str], dict[str, Any]]:
    """``helm template`` of the chart: every resource by (kind, name)."""
    assert HELM.exists(), "helm is built by `make deploy-tools`"
    done = subprocess.run([str(HELM), "template", "ap", str(CHART), "--kube-version", "1.32.3", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(done.stdout) if doc}


def loaded_config(resources: dict[tuple[str, str], dict[str, Any]], tmp_path: Path) -> tuple[Config, set[str]]:
    """The ConfigMap's config, loaded by the pipeline with the files it names made under ``tmp_path``
    (secrets, the Kafka password and CA); and the secret file names it refers to."""
    text = resources[("ConfigMap", "ap-alert-pipeline")]["data"]["config.yml"]
    referenced = set(re.findall(r"/etc/alert-pipeline/secrets/([\w.-]+)", text))
    for path in re.findall(r"/etc/alert-pipeline/[\w./-]+", text):
        local = tmp_path / path.removeprefix("/etc/alert-pipeline/")
        local.parent.mkdir(parents=True, exist_ok=True)
        # The Kafka CA must be a certificate (the worker's SSL context loads it); a real one will do.
        local.write_text(Path(ssl.get_default_verify_paths().openssl_cafile).read_text() if path.endswith(".crt")
                         else "https://example.com/secret\n")
    return parse_config(yaml.safe_load(text.replace("/etc/alert-pipeline/", f"{tmp_path}/"))), referenced


@pytest.mark.parametrize("values", [[], ["-f", str(MULTI_TENANT)]], ids=["default", "multi-tenant"])
def test_the_chart_config_loads_and_the_pods_use_it(values, tmp_path):
    resources = render(*values)
    config, referenced = loaded_config(resources, tmp_path)
    secret = resources.get(("Secret", "ap-alert-pipeline"))
    if secret is not None:  # the chart's own Secret holds every file the config reads
        assert referenced and referenced <= set(secret["stringData"])
    # The multi-tenant values run the delivery in pods of its own (worker.delivery.replicas 2).
    roles = {"worker": "stream", "delivery": "delivery"} if values else {"worker": "all"}
    ingest = resources[("Deployment", "ap-alert-pipeline-ingest")]
    workers = {c: resources[("Deployment", f"ap-alert-pipeline-{c}")] for c in roles}
    assert {name for kind, name in resources if kind == "Deployment"} == {
        "ap-alert-pipeline-ingest", *(f"ap-alert-pipeline-{c}" for c in roles)}
    for deployment in (ingest, *workers.values()):
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
        assert container["resources"]["requests"] and container["args"][-1] == "/etc/alert-pipeline/config/config.yml"
        port = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert port == ({"http": int(config.ingest.listen.rsplit(":")[1])} if deployment is ingest
                        else {"metrics": int(config.worker.metrics_listen.rsplit(":")[1])})
    for component, role in roles.items():
        [container] = workers[component]["spec"]["template"]["spec"]["containers"]
        assert container["args"][:3] == ["worker", "--role", role]
    per = 6 if values else 4
    assert workers["worker"]["spec"]["replicas"] == -(-config.kafka.partitions // per) <= config.kafka.partitions
    # The ingest reads queue sizes from the pods that deliver, through their headless Service.
    senders = "delivery" if values else "worker"
    [url] = config.ingest.worker_metrics
    service = resources[("Service", f"ap-alert-pipeline-{senders}")]
    assert url == f"http://ap-alert-pipeline-{senders}.default.svc:{config.worker.metrics_listen.rsplit(':')[1]}/metrics"
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert {("PodDisruptionBudget", f"ap-alert-pipeline-{c}") for c in ("ingest", *roles)} <= set(resources)


def test_strimzi_topics_are_the_topics_the_processes_use(tmp_path):
    resources = render("-f", str(MULTI_TENANT))
    config, _ = loaded_config(resources, tmp_path)
    config.worker.data_dir = str(tmp_path / "data")
    topics = topics_for(config)
    declared = {doc["spec"]["topicName"]: doc for (kind, _), doc in resources.items() if kind == "KafkaTopic"}
    assert set(declared) == set(topics.all_topics(config))
    assert {"prod.notifications.shop", "prod.notifications.payments", "prod.dispatch.groups"} <= set(declared)
    compacted = {name for name, doc in declared.items() if doc["spec"]["config"].get("cleanup.policy") == "compact"}
    assert compacted == set(topics.compacted())
    assert {(d["spec"]["partitions"], d["spec"]["replicas"]) for d in declared.values()} == {
        (config.kafka.partitions, config.kafka.replication_factor)}
    user = resources[("KafkaUser", "alert-pipeline")]
    assert {acl["resource"]["name"] for acl in user["spec"]["authorization"]["acls"] if
            acl["resource"]["type"] == "topic"} == {"prod.", config.worker.app_id}


def test_more_workers_than_partitions_are_refused():
    assert render("--set", "worker.replicas=12")[("Deployment", "ap-alert-pipeline-worker")]["spec"]["replicas"] == 12
    done = subprocess.run([str(HELM), "template", "ap", str(CHART), "--kube-version", "1.32.3",
                           "--set", "worker.replicas=13"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "worker.replicas (13) exceeds kafka.partitions (12)" in done.stderr
    done = subprocess.run([str(HELM), "template", "ap", str(CHART), "--kube-version", "1.32.3",
                           "--set", "worker.delivery.replicas=13"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "worker.delivery.replicas (13) exceeds kafka.partitions (12)" in done.stderr


def test_the_image_the_chart_names_builds_and_runs():
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    image = f"alert-pipeline:{version}"
    deployments = [d for (kind, _), d in render().items() if kind == "Deployment"]
    named = {c["image"] for d in deployments for c in d["spec"]["template"]["spec"]["containers"]}
    plain = [d for d in yaml.safe_load_all((ROOT / "deploy/kubernetes/alert-pipeline.yaml").read_text())
             if d and d["kind"] == "Deployment"]
    named |= {c["image"] for d in plain for c in d["spec"]["template"]["spec"]["containers"]}
    assert named == {image}
    built = subprocess.run(["make", "-s", "image"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stdout + built.stderr
    container = subprocess.run(["buildah", "from", "--pull=never", f"localhost/{image}"], capture_output=True,
                               text=True, check=True).stdout.strip()
    try:
        def run(*command: str) -> str:
            done = subprocess.run(["buildah", "run", "--isolation", "chroot", container, "--", *command],
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert run("id", "-u").strip() == "10001"  # not root
        assert run("/opt/alert-pipeline/bin/alert-pipeline", "templates", "test", "--channel", "slack",
                   "--language", "zh").startswith("== slack (zh)\n-- title\n[告警:1] TestNotification")
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)
