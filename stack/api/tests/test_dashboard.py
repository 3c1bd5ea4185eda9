"""The Grafana dashboard and monitoring config cannot drift from what the API exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.exposition import series
from tests.flowers import SETOSA

MONITORING = Path(__file__).resolve().parents[3] / "monitoring"
DASHBOARD = MONITORING / "dashboards" / "grafana-fastapi-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "iris-prometheus"}
# Labels Prometheus adds to every scraped series; the API does not export them.
TARGET_LABELS = {"instance", "job"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords or labels."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][\w:]*", expr):
        if match[0] not in PROMQL_WORDS and not expr[match.end() :].lstrip().startswith("("):
            names.add(match[0])
    return names


def label_uses(expr: str) -> tuple[set[str], list[tuple[str, str, str]]]:
    """Label names in by/without clauses, and (name, operator, value) of every matcher."""
    grouped = {
        label.strip()
        for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
        for label in clause.split(",")
        if label.strip()
    }
    matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', expr)
    return grouped, matchers


def test_the_parsers_find_what_they_should():
    expr = 'histogram_quantile(0.9, sum by (le, handler) (rate(a_bucket{status=~"4xx|5xx"}[5m]))) or vector(0)'
    assert metric_names(expr) == {"a_bucket"}
    assert label_uses(expr) == ({"le", "handler"}, [("status", "=~", "4xx|5xx")])


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def targets(dashboard: dict) -> list[dict]:
    return [target for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_dashboard_is_a_plain_model_with_a_fixed_uid(dashboard: dict):
    assert "__inputs" not in dashboard
    assert (dashboard["uid"], dashboard["title"]) == ("iris-api", "Iris API")
    titles = " | ".join(panel["title"] for panel in dashboard["panels"])
    for wanted in ("Request rate", "Error rate", "p50 / p95 / p99", "Predictions per species", "Model info"):
        assert wanted in titles
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_every_panel_and_target_uses_the_provisioned_datasource(dashboard: dict):
    for panel in dashboard["panels"]:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    provisioned = (MONITORING / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    assert re.search(r"^\s+uid: iris-prometheus$", provisioned, re.MULTILINE)


def test_error_panel_covers_4xx_and_5xx_and_latency_covers_three_quantiles(dashboard: dict):
    exprs = " ".join(target["expr"] for target in targets(dashboard))
    assert '"4xx"' in exprs
    assert '"5xx"' in exprs
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le) (rate(iris_http_request_duration_seconds_bucket" in exprs


def test_every_metric_and_label_in_the_dashboard_is_exported(client: TestClient, dashboard: dict):
    client.post("/predict", json={"items": [SETOSA]})
    client.post("/predict", json={"items": []})
    client.get("/no/such/page")
    exposition = client.get("/metrics").text

    used = set()
    for target in targets(dashboard):
        expr = target["expr"]
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        used |= names
        grouped, matchers = label_uses(expr)
        exported = [labels for name in names for labels, _ in series(exposition, name)]
        assert exported, f"{sorted(names)} not in the API's /metrics output (query {expr!r})"
        label_names = {label for labels in exported for label in labels} | TARGET_LABELS
        assert grouped | {name for name, _, _ in matchers} <= label_names, expr
        for label, op, value in matchers:
            if label == "status":  # a 5xx may not have happened yet, but it is a value the API uses
                assert all(re.fullmatch(r"[2-5]xx", v) for v in value.split("|")), expr
            elif op == "=":
                assert any(labels.get(label) == value for labels in exported), expr
    assert used >= {
        "iris_http_requests_total",
        "iris_http_request_duration_seconds_bucket",
        "iris_predictions_total",
        "iris_model_info",
    }


def test_prometheus_scrapes_the_api_and_itself():
    config = (MONITORING / "prometheus.yml").read_text()
    assert re.search(r"^\s+scrape_interval: 5s$", config, re.MULTILINE)
    assert re.search(
        r"job_name: iris-api\n\s+metrics_path: /metrics\n\s+static_configs:\n\s+- targets: \[\"api:8000\"\]", config
    )
    assert "job_name: prometheus" in config


ALERTS = MONITORING / "alerts.yml"
# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = {"up"}


@pytest.fixture(scope="module")
def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_has_a_severity_a_summary_and_a_one_line_runbook(alert_rules: list[dict]):
    names = [rule["alert"] for rule in alert_rules]
    assert len(set(names)) == len(names)
    for rule in alert_rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        runbook = rule["annotations"]["runbook"]
        assert runbook.strip(), rule["alert"]
        assert "\n" not in runbook.strip(), rule["alert"]


def test_the_alerts_the_issue_asks_for_exist(alert_rules: list[dict]):
    exprs = {rule["alert"]: " ".join(rule["expr"].split()) for rule in alert_rules}
    assert exprs["IrisApiTargetMissing"] == 'absent(up{job="iris-api"})'
    assert 'up{job="iris-api"} == 0' in exprs["IrisApiDown"]
    assert "iris_model_loaded" in exprs["IrisModelNotLoaded"]
    assert 'status="5xx"' in exprs["IrisApiHigh5xxRatio"]
    assert 'status="4xx"' in exprs["IrisApiHigh4xxRatio"]
    for quantile, alert in (("0.95", "IrisPredictLatencyP95High"), ("0.99", "IrisPredictLatencyP99High")):
        assert f"histogram_quantile({quantile}," in exprs[alert]
        assert 'handler="/predict"' in exprs[alert]
    assert "avg_over_time(up[" in exprs["IrisScrapesFailing"]
    drift = exprs["IrisInputDrift"]
    for name in (
        "_sum",
        "_count",
        "iris_training_feature_mean_centimeters",
        "iris_training_feature_stddev_centimeters",
    ):
        assert name in drift


def test_prometheus_loads_the_rules_from_where_they_are_mounted():
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_every_metric_and_label_in_the_alert_rules_is_exported(client: TestClient, alert_rules: list[dict]):
    client.post("/predict", json={"items": [SETOSA]})
    client.post("/predict", json={"items": []})
    exposition = client.get("/metrics").text
    for rule in alert_rules:
        expr = rule["expr"]
        names = metric_names(expr)
        assert names, f"no metric in {rule['alert']}"
        exported = [labels for name in names - PROMETHEUS_SERIES for labels, _ in series(exposition, name)]
        for name in names - PROMETHEUS_SERIES:
            assert series(exposition, name), f"{rule['alert']}: {name} is not in the API's /metrics output"
        label_names = {label for labels in exported for label in labels} | TARGET_LABELS
        grouped, matchers = label_uses(expr)
        assert grouped | {name for name, _, _ in matchers} <= label_names, rule["alert"]
        for label, op, value in matchers:
            if label == "status":
                assert re.fullmatch(r"[2-5]xx|499", value), rule["alert"]
            elif op == "=" and label not in TARGET_LABELS:
                assert any(labels.get(label) == value for labels in exported), rule["alert"]
