"""Alert rules and dashboards are built from the metrics the code actually exports.

The exported metrics are read from the source, the way a reviewer would grep for them: every
``Counter``/``Gauge``/``Histogram``/``Summary`` declared with ``metric_name(service, thing)`` under
services/ and shared/. A declaration whose service is a variable (``GrpcMetrics``) exists once per
gRPC server, i.e. for every service whose package (its entrypoint or its wiring) calls ``start_grpc_server``.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.deploy_files import MONITORING, REPO, load_yaml, services

DASHBOARDS = sorted((MONITORING / "grafana/dashboards").glob("*.json"))
ALERTS = MONITORING / "prometheus/alerts.yml"
# Series Prometheus adds to every target, and labels it attaches when scraping.
TARGET_LABELS = {"job", "instance", "pod", "namespace", "container"}
# Metrics from outside the code: NVIDIA's dcgm-exporter (GPU utilisation and memory) and Prometheus' `up`.
EXTERNAL_METRICS = {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "up"}
SUFFIXES = {"Counter": ("",), "Gauge": ("",), "Histogram": ("_bucket", "_sum", "_count"), "Summary": ("_sum", "_count")}


@dataclass(frozen=True)
class Family:
    name: str
    kind: str
    labels: frozenset[str]

    def series(self) -> set[str]:
        return {self.name + suffix for suffix in SUFFIXES[self.kind]}


def _string(node: ast.expr, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def _labels(call: ast.Call) -> frozenset[str]:
    nodes = [kw.value for kw in call.keywords if kw.arg == "labelnames"] or call.args[2:3]
    if not nodes or not isinstance(nodes[0], ast.List | ast.Tuple):
        return frozenset()
    return frozenset(e.value for e in nodes[0].elts if isinstance(e, ast.Constant) and isinstance(e.value, str))


def grpc_services() -> list[str]:
    return [
        s
        for s in services()
        if any("start_grpc_server(" in path.read_text() for path in (REPO / "services" / s).glob("*.py"))
    ]


def exported_families() -> dict[str, Family]:
    families: dict[str, Family] = {}
    sources = [
        *(REPO / "services").rglob("*.py"),
        *(p for p in (REPO / "shared").rglob("*.py") if "generated" not in p.parts),
    ]
    for path in sources:
        tree = ast.parse(path.read_text())
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in SUFFIXES):
                continue
            if not call.args or not isinstance(call.args[0], ast.Call):
                continue
            inner = call.args[0]
            if not (isinstance(inner.func, ast.Name) and inner.func.id == "metric_name" and len(inner.args) == 2):
                continue
            service, thing = _string(inner.args[0], constants), _string(inner.args[1], constants)
            assert thing is not None, f"{path}: metric_name with a computed name"
            for owner in [service] if service is not None else grpc_services():
                name = f"bundlewise_{owner}_{thing}"
                families[name] = Family(name, call.func.id, _labels(call))
    return families


FAMILIES = exported_families()
SERIES = {series: family for family in FAMILIES.values() for series in family.series()}


def problems_in(expr: str) -> list[str]:
    """Metrics ``expr`` names that nothing exports, and label matchers on labels a metric lacks."""
    problems = []
    for name in re.findall(r"\b(bundlewise_[a-z0-9_]+)", expr):
        if name not in SERIES:
            problems.append(f"{name} is not exported")
    for name, matchers in re.findall(r"\b(bundlewise_[a-z0-9_]+)\{([^}]*)\}", expr):
        if name in SERIES:
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
                if label not in SERIES[name].labels | TARGET_LABELS | {"le"}:
                    problems.append(f"{name} has no label {label}")
    for name in re.findall(r"\b(DCGM_[A-Z_]+)", expr):
        if name not in EXTERNAL_METRICS:
            problems.append(f"{name} is not a known external metric")
    return problems


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def dashboard_exprs() -> dict[str, str]:
    """'<dashboard> / <panel>' -> each query expression."""
    exprs = {}
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                exprs[f"{path.stem} / {panel['title']} / {target['refId']}"] = target["expr"]
    return exprs


def test_the_source_scan_finds_the_metrics_of_every_service() -> None:
    owners = {name.split("_")[1] for name in FAMILIES}
    assert owners == set(services())
    assert FAMILIES["bundlewise_ranker_grpc_requests_total"].labels == {"method", "code"}
    assert FAMILIES["bundlewise_embedding_queue_depth"] == Family(
        "bundlewise_embedding_queue_depth", "Gauge", frozenset({"modality"})
    )


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: str(r["alert"]))
def test_every_alert_uses_exported_metrics_and_links_its_runbook(rule: dict[str, Any]) -> None:
    assert problems_in(rule["expr"]) == []
    assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}
    assert rule["labels"]["severity"] in {"page", "ticket"}
    assert rule["annotations"]["summary"]
    anchor = rule["annotations"]["runbook"].removeprefix("docs/operations.md#")
    assert anchor in markdown_anchors(REPO / "docs/operations.md")


def test_the_obvious_failures_have_alerts() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {"IngestionLagGrowing", "GatewayErrorRate", "PolicyNotUpdated", "EmbeddingQueueSaturated"} <= names
    assert len(names) == len(alert_rules()), "alert names are unique"


def test_the_prometheus_rule_for_kubernetes_holds_exactly_the_compose_rules() -> None:
    rule = load_yaml(MONITORING / "k8s-prometheusrule.yaml")
    assert rule["spec"] == load_yaml(ALERTS), "run: python deploy/monitoring/render_prometheusrule.py"


def test_compose_prometheus_loads_the_rules_and_scrapes_every_service() -> None:
    config = load_yaml(MONITORING / "prometheus/prometheus.yml")
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {f"bundlewise-{s}" for s in services()}


@pytest.mark.parametrize("name", sorted(dashboard_exprs()))
def test_every_dashboard_query_uses_exported_metrics(name: str) -> None:
    assert problems_in(dashboard_exprs()[name]) == []


def test_dashboards_show_what_operators_need() -> None:
    exprs = " ".join(dashboard_exprs().values())
    needed = [
        # request rate, latency p50/p99 and errors per endpoint
        "sum by (route, method) (rate(bundlewise_gateway_http_requests_total",
        "histogram_quantile(0.5, sum by (le, route) (rate(bundlewise_gateway_http_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, route) (rate(bundlewise_gateway_http_request_duration_seconds_bucket",
        'sum by (route) (rate(bundlewise_gateway_http_requests_total{status=~"5.."}',
        "histogram_quantile(0.99, sum by (le, method) (rate(bundlewise_ranker_grpc_request_duration_seconds_bucket",
        # consumer lag and events/s
        "bundlewise_ingestion_consumer_lag_messages",
        "rate(bundlewise_ingestion_events_total",
        # embedding batch size, queue depth, GPU utilisation
        "bundlewise_embedding_batch_size_bucket",
        "bundlewise_embedding_queue_depth",
        "DCGM_FI_DEV_GPU_UTIL",
        # policy version and reward
        "bundlewise_policy_published_version",
        'bundlewise_policy_outcomes_total{kind="click"}',
    ]
    assert [n for n in needed if n not in exprs] == []


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboards_query_the_provisioned_data_source(path: Path) -> None:
    (datasource,) = load_yaml(MONITORING / "grafana/provisioning/datasources/prometheus.yml")["datasources"]
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] == path.stem
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}, panel["title"]
            assert panel["targets"], panel["title"]


def test_every_dashboard_is_in_the_kubernetes_config_map() -> None:
    kustomization = load_yaml(MONITORING / "kustomization.yaml")
    (generator,) = kustomization["configMapGenerator"]
    assert sorted(generator["files"]) == sorted(str(p.relative_to(MONITORING)) for p in DASHBOARDS)
    assert generator["options"]["labels"] == {"grafana_dashboard": "1"}


def markdown_anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    anchors = set()
    for line in path.read_text().splitlines():
        heading = re.match(r"#+\s+(.*)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors
