"""The Grafana dashboard and monitoring config cannot drift from what the API exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from app import shadow
from app.metrics import LOW_CONFIDENCE
from tests.exposition import series
from tests.flowers import SETOSA

MONITORING = Path(__file__).resolve().parents[3] / "monitoring"
DASHBOARD = MONITORING / "dashboards" / "grafana-fastapi-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "iris-prometheus"}
# Labels Prometheus adds to every scraped series; the API does not export them.
# `track` is the canary release's: monitoring/prometheus.yml sets it on both API jobs.
TARGET_LABELS = {"instance", "job", "track"}
# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = {"up"}
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


def targets(dashboard: dict, shadow: bool | None = None) -> list[dict]:
    """Every panel's queries; `shadow`: only the shadow panels' (True) or none of them (False)."""
    return [
        target
        for panel in dashboard["panels"]
        if shadow is None or panel["title"].startswith("Shadow:") == shadow
        for target in panel.get("targets", [])
    ]


def test_dashboard_is_a_plain_model_with_a_fixed_uid(dashboard: dict):
    assert "__inputs" not in dashboard
    assert (dashboard["uid"], dashboard["title"]) == ("iris-api", "Iris API")
    titles = " | ".join(panel["title"] for panel in dashboard["panels"])
    for wanted in (
        "Request rate",
        "Error rate",
        "p50 / p95 / p99",
        "Predictions per species",
        "Model info",
        "5xx ratio",
        "API target up",
        "Confidence distribution",
        "Low-confidence rate",
        "Input drift",
        "Input vs training distribution",
        "Model accuracy",
    ):
        assert wanted in titles
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_every_panel_and_target_uses_the_provisioned_datasource(dashboard: dict):
    for panel in dashboard["panels"]:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    provisioned = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert [(ds["uid"], ds["type"]) for ds in provisioned["datasources"]] == [("iris-prometheus", "prometheus")]


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
    for target in targets(dashboard, shadow=False):
        expr = target["expr"]
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        used |= names
        grouped, matchers = label_uses(expr)
        exported = [labels for name in names - PROMETHEUS_SERIES for labels, _ in series(exposition, name)]
        assert exported or names <= PROMETHEUS_SERIES, f"{sorted(names)} not in the API's /metrics output ({expr!r})"
        for name in names - PROMETHEUS_SERIES:
            assert series(exposition, name), f"{name} is not in the API's /metrics output (query {expr!r})"
        label_names = {label for labels in exported for label in labels} | TARGET_LABELS
        assert grouped | {name for name, _, _ in matchers} <= label_names, expr
        for label, op, value in matchers:
            if label == "status":  # a 5xx may not have happened yet, but it is a value the API uses
                assert all(re.fullmatch(r"[2-5]xx|499", v) for v in value.split("|")), expr
            elif op == "=" and label not in TARGET_LABELS and not value.startswith("$"):
                assert any(labels.get(label) == value for labels in exported), expr
            elif value.startswith("$"):
                # `$job|$job-canary`: the stable and the canary jobs of a canary release.
                for alternative in value.split("|"):
                    name = alternative[1:].removesuffix("-canary")
                    assert name in variables(dashboard), f"{expr}: no template variable {alternative}"
    assert used >= {
        "iris_http_requests_total",
        "iris_http_request_duration_seconds_bucket",
        "iris_predictions_total",
        "iris_model_info",
        "iris_input_centimeters_bucket",
        "iris_training_feature_cumulative_ratio",
        "iris_training_feature_mean_centimeters",
        "iris_training_feature_stddev_centimeters",
        "iris_prediction_confidence_bucket",
        "iris_model_accuracy",
        "up",
    }


def variables(dashboard: dict) -> dict[str, dict]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def panel(dashboard: dict, title_part: str) -> dict:
    found = [panel for panel in dashboard["panels"] if title_part in panel["title"]]
    assert len(found) == 1, f"{len(found)} panels titled like {title_part!r}"
    return found[0]


def exprs(panel: dict) -> list[str]:
    return [target["expr"] for target in panel["targets"]]


def test_job_and_instance_variables_filter_every_query(dashboard: dict):
    found = variables(dashboard)
    assert found["job"]["current"]["value"] == "iris-api"
    assert found["instance"]["includeAll"]
    assert found["instance"]["allValue"] == ".+"
    for variable in found.values():
        assert variable["datasource"] == DATASOURCE
    for panel in dashboard["panels"]:
        # The canary panels read both jobs of a canary release, every instance (the canary's
        # is its address): `job=~"$job|$job-canary"`.
        canary = panel["title"].startswith("Canary vs stable")
        # The shadow panels read the comparator's job (`irisctl shadow start`).
        shadow = panel["title"].startswith("Shadow:")
        for target in panel.get("targets", []):
            selectors = re.findall(r"[a-zA-Z_:][\w:]*\{([^}]*)\}", target["expr"])
            assert selectors, target["expr"]
            for selector in selectors:
                if shadow:
                    assert selector == 'job="$job-shadow"', target["expr"]
                elif canary:
                    assert 'job=~"$job|$job-canary"' in selector, target["expr"]
                else:
                    assert 'job="$job"' in selector, target["expr"]
                    assert 'instance=~"$instance"' in selector, target["expr"]


def test_predict_latency_is_apart_from_the_other_handlers(dashboard: dict):
    for expr in exprs(panel(dashboard, "p50 / p95 / p99")):
        assert 'handler="/predict"' in expr
    others = exprs(panel(dashboard, "Latency of other handlers"))
    assert all('handler!="/predict"' in expr and "by (le, handler)" in expr for expr in others)


def test_the_5xx_ratio_and_error_panels_show_a_dead_target_as_no_data(dashboard: dict):
    (ratio,) = exprs(panel(dashboard, "5xx ratio"))
    assert 'status="5xx"' in ratio
    assert " / sum(rate(iris_http_requests_total{" in ratio
    for expr in [ratio, *exprs(panel(dashboard, "Error rate"))]:
        assert "vector(0)" not in expr
    assert any('status="499"' in expr for expr in exprs(panel(dashboard, "Error rate")))


def test_the_up_panel_tells_up_down_and_missing_apart(dashboard: dict):
    up = panel(dashboard, "API target up")
    assert exprs(up) == ['up{job="$job",instance=~"$instance"}']
    assert up["fieldConfig"]["defaults"]["noValue"] == "MISSING"
    (mapping,) = up["fieldConfig"]["defaults"]["mappings"]
    assert {value: shown["text"] for value, shown in mapping["options"].items()} == {"0": "DOWN", "1": "UP"}


def test_model_monitoring_panels(dashboard: dict):
    assert LOW_CONFIDENCE == 0.6
    (low,) = exprs(panel(dashboard, "Low-confidence rate (confidence ≤ 0.6)"))
    assert 'iris_prediction_confidence_bucket{job="$job",instance=~"$instance",le="0.6"}' in low
    assert "iris_prediction_confidence_count" in low
    assert "iris_prediction_confidence_bucket" in exprs(panel(dashboard, "Confidence distribution"))[0]
    distribution = panel(dashboard, "Input vs training distribution")
    assert distribution["repeat"] == "feature"
    assert "feature" in variables(dashboard)
    live, training = exprs(distribution)
    assert 'iris_input_centimeters_bucket{job="$job",instance=~"$instance",feature="$feature"}' in live
    assert 'iris_training_feature_cumulative_ratio{job="$job",instance=~"$instance",feature="$feature"}' in training
    (drift,) = exprs(panel(dashboard, "Input drift"))
    for name in ("iris_input_centimeters_sum", "iris_input_centimeters_count"):
        assert f'{name}{{job="$job",instance=~"$instance"}}[30m]' in drift


def test_prometheus_scrapes_the_api_and_itself():
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == "5s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"iris-api", "iris-api-canary", "iris-api-shadow", "prometheus"}
    # metrics_path defaults to /metrics; the API's must be it.
    assert jobs["iris-api"].get("metrics_path", "/metrics") == "/metrics"
    assert jobs["iris-api"]["static_configs"] == [{"targets": ["api:8000"], "labels": {"track": "stable"}}]
    # A canary release's container, found by the name only it answers to, labelled apart.
    canary = jobs["iris-api-canary"]
    assert canary.get("metrics_path", "/metrics") == "/metrics"
    assert canary["dns_sd_configs"] == [{"names": ["api-canary"], "type": "A", "port": 8000, "refresh_interval": "2s"}]
    assert canary["relabel_configs"] == [{"target_label": "track", "replacement": "canary"}]
    # A shadow's comparator, found by the name only it answers to.
    assert jobs["iris-api-shadow"]["dns_sd_configs"] == [
        {"names": ["shadow"], "type": "A", "port": 8000, "refresh_interval": "5s"}
    ]
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["localhost:9090"]}]


ALERTS = MONITORING / "alerts.yml"


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


def test_every_metric_and_label_of_the_shadow_panels_is_the_comparators(dashboard: dict):
    comparator = shadow.Comparator("http://127.0.0.1:9", queue_size=1, workers=0, timeout=1)
    comparator.metrics.outcome(
        shadow.Outcome("compared", [("setosa", "virginica")], [0.5]),
        shadow.Champion(200, 0.001, None),
        shadow.Challenger(200, 0.002, None),
    )
    comparator.metrics.agreed.inc(0)
    with TestClient(comparator) as client:
        exposition = client.get("/metrics").text
    queries = targets(dashboard, shadow=True)
    assert len(queries) == 4
    for target in queries:
        expr = target["expr"]
        for name in metric_names(expr):
            assert series(exposition, name), f"{name} is not in the comparator's /metrics output ({expr!r})"
        grouped, _ = label_uses(expr)
        exported = {label for name in metric_names(expr) for labels, _ in series(exposition, name) for label in labels}
        assert grouped <= exported | {"le"}, expr
