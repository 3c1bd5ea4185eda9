"""What /metrics exports after some traffic."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString
from starlette.types import Message, Receive, Scope, Send

from app.main import create_app
from app.metrics import CONFIDENCE_BUCKETS, LOW_CONFIDENCE, Metrics
from app.middleware import MetricsMiddleware, status_label
from app.model import FEATURES
from tests.exposition import sample, series
from tests.flowers import SETOSA, VIRGINICA


def test_requests_are_counted_by_route_template_method_and_status_class(client: TestClient):
    client.post("/predict", json={"items": [SETOSA]})
    client.post("/predict", json={"items": [SETOSA]})
    client.post("/predict", json={"items": []})
    client.get("/predict")
    client.get("/health")
    client.get("/x" * 50)
    client.request("BREW", "/predict")
    client.get("/metrics")
    text = client.get("/metrics").text
    requests = "iris_http_requests_total"
    assert sample(text, requests, handler="/predict", method="POST", status="2xx") == 2
    assert sample(text, requests, handler="/predict", method="POST", status="4xx") == 1
    assert sample(text, requests, handler="/predict", method="GET", status="4xx") == 1
    assert sample(text, requests, handler="/health", method="GET", status="2xx") == 1
    assert sample(text, requests, handler="other", method="GET", status="4xx") == 1
    assert sample(text, requests, handler="/predict", method="other", status="4xx") == 1
    assert "/x/x" not in text
    assert "BREW" not in text
    assert 'handler="/metrics"' not in text


def test_latency_histogram_resolves_sub_millisecond_requests(client: TestClient):
    client.get("/health")
    text = client.get("/metrics").text
    buckets = [
        labels["le"]
        for labels, _ in series(text, "iris_http_request_duration_seconds_bucket")
        if labels["handler"] == "/health"
    ]
    assert buckets[:3] == ["0.0005", "0.001", "0.0025"]
    assert buckets[-2:] == ["5.0", "+Inf"]
    assert len([b for b in buckets if b != "+Inf" and float(b) <= 0.01]) >= 5
    count = "iris_http_request_duration_seconds_count"
    assert sample(text, count, handler="/health", method="GET") == 1


def test_predictions_are_counted_by_species(client: TestClient):
    text = client.get("/metrics").text
    assert sample(text, "iris_predictions_total", species="versicolor") == 0
    client.post("/predict", json={"items": [SETOSA, SETOSA, VIRGINICA]})
    text = client.get("/metrics").text
    assert sample(text, "iris_predictions_total", species="setosa") == 2
    assert sample(text, "iris_predictions_total", species="virginica") == 1
    assert sample(text, "iris_predictions_total", species="versicolor") == 0


def test_model_info_carries_the_metadata(client: TestClient):
    meta = client.get("/model").json()
    text = client.get("/metrics").text
    labels = {
        "model": "logistic-regression",
        "version": meta["version"],
        "accuracy": str(meta["accuracy"]),
        "trained_at": meta["trained_at"],
    }
    assert sample(text, "iris_model_info", **labels) == 1
    assert sample(text, "iris_model_loaded") == 1


def asgi_post(app, chunks: list[bytes]) -> list[Message]:
    """POST /predict at the ASGI level: `chunks` arrive with more_body=True, then the client disconnects."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    incoming = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_a_client_that_disconnects_mid_body_is_counted_as_499_not_5xx(model_file: Path):
    app = create_app(model_file, replica="test-replica")
    sent = asgi_post(app, [b'{"items": [{"sepal_length": 5.1,'])
    assert sent == []  # nobody left to answer
    text = TestClient(app).get("/metrics").text
    requests = "iris_http_requests_total"
    assert sample(text, requests, handler="/predict", method="POST", status="499") == 1
    assert sample(text, requests, handler="/predict", method="POST", status="5xx") == 0
    assert sample(text, requests, handler="/predict", method="POST", status="4xx") == 0
    # Not timed: its duration is the client's, and would skew /predict's latency quantiles.
    assert sample(text, "iris_http_request_duration_seconds_count", handler="/predict", method="POST") == 0


def test_an_app_that_fails_without_answering_is_still_a_5xx():
    metrics = Metrics()

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("bug")

    middleware = MetricsMiddleware(broken, metrics=metrics, routes=[])
    with pytest.raises(RuntimeError):
        asyncio.run(middleware({"type": "http", "method": "GET", "path": "/x"}, None, None))
    assert metrics.requests.labels(handler="other", method="GET", status="5xx")._value.get() == 1


@pytest.mark.parametrize(
    ("status", "disconnected", "label"),
    [(200, False, "2xx"), (413, True, "4xx"), (503, False, "5xx"), (None, True, "499"), (None, False, "5xx")],
)
def test_status_label(status, disconnected, label):
    assert status_label(status, disconnected) == label


def test_inputs_are_histogrammed_per_feature_on_the_training_bounds(client: TestClient):
    training = client.get("/model").json()["training"]["features"]
    client.post("/predict", json={"items": [SETOSA, VIRGINICA]})
    client.post("/predict", json={"items": [{**SETOSA, "petal_length": 49.0}]})
    text = client.get("/metrics").text
    for feature in FEATURES:
        buckets = [
            (labels["le"], value)
            for labels, value in series(text, "iris_input_centimeters_bucket")
            if labels["feature"] == feature
        ]
        bounds = training[feature]["buckets"]
        assert [le for le, _ in buckets] == [floatToGoString(b) for b in bounds] + ["+Inf"]
        values = [SETOSA[feature], VIRGINICA[feature], 49.0 if feature == "petal_length" else SETOSA[feature]]
        expected = [sum(v <= b for v in values) for b in bounds] + [3]
        assert [count for _, count in buckets] == expected, feature
        assert sample(text, "iris_input_centimeters_count", feature=feature) == 3
        assert sample(text, "iris_input_centimeters_sum", feature=feature) == pytest.approx(sum(values))


def test_confidence_is_histogrammed_by_predicted_species(client: TestClient):
    answer = client.post("/predict", json={"items": [SETOSA, SETOSA, VIRGINICA]}).json()
    text = client.get("/metrics").text
    top = {p["species"]: max(p["probabilities"].values()) for p in answer["predictions"]}
    for species, count in (("setosa", 2), ("virginica", 1), ("versicolor", 0)):
        assert sample(text, "iris_prediction_confidence_count", species=species) == count
        buckets = {
            labels["le"]: v
            for labels, v in series(text, "iris_prediction_confidence_bucket")
            if labels["species"] == species
        }
        assert list(buckets) == [floatToGoString(b) for b in CONFIDENCE_BUCKETS] + ["+Inf"]
        if count:
            assert buckets["+Inf"] == count
            assert buckets[floatToGoString(LOW_CONFIDENCE)] == (count if top[species] <= LOW_CONFIDENCE else 0)
    assert sample(text, "iris_prediction_confidence_sum", species="setosa") == pytest.approx(2 * top["setosa"])


def test_training_statistics_and_model_numbers_are_gauges(client: TestClient):
    meta = client.get("/model").json()
    text = client.get("/metrics").text
    for feature, stats in meta["training"]["features"].items():
        assert sample(text, "iris_training_feature_mean_centimeters", feature=feature) == stats["mean"]
        assert sample(text, "iris_training_feature_stddev_centimeters", feature=feature) == stats["std"]
        for bound, fraction in zip(stats["buckets"], stats["training_cumulative"], strict=True):
            ratio = sample(text, "iris_training_feature_cumulative_ratio", feature=feature, le=floatToGoString(bound))
            assert ratio == fraction
    assert sample(text, "iris_model_accuracy") == meta["accuracy"]
    trained = datetime.fromisoformat(meta["trained_at"]).timestamp()
    assert sample(text, "iris_model_trained_timestamp_seconds") == trained
    assert sample(text, "iris_model_training_duration_seconds") == meta["training"]["duration_seconds"]


def test_monitoring_label_values_come_from_fixed_sets(client: TestClient):
    odd = {"sepal_length": 0.001, "sepal_width": 50, "petal_length": 1e-9, "petal_width": 49.99}
    client.post("/predict", json={"items": [odd, SETOSA, VIRGINICA] * 100})
    client.post("/predict", json={"items": [{**SETOSA, "colour": "blue"}]})
    text = client.get("/metrics").text
    assert {labels["feature"] for labels, _ in series(text, "iris_input_centimeters_count")} == set(FEATURES)
    assert {labels["species"] for labels, _ in series(text, "iris_prediction_confidence_count")} == {
        "setosa",
        "versicolor",
        "virginica",
    }
    assert "colour" not in text


def test_every_labelled_series_exists_with_zeros_on_a_fresh_app(client: TestClient):
    # Prometheus's advice: a series born with its first request has no earlier sample, so rate()
    # and increase() cannot see a burst right after a start. Every label set must be there at once.
    families = {family.name: family for family in text_string_to_metric_families(client.get("/metrics").text)}
    routes = {("/predict", "POST"), ("/health", "GET"), ("/model", "GET"), ("/docs", "GET")}
    species = {"setosa", "versicolor", "virginica"}
    expected = {
        "iris_http_requests": {(h, m, s) for h, m in routes for s in ("2xx", "4xx", "5xx", "499")},
        "iris_http_request_duration_seconds": routes,
        "iris_predictions": {(s,) for s in species},
        "iris_input_centimeters": {(f,) for f in FEATURES},
        "iris_prediction_confidence": {(s,) for s in species},
    }
    for name, label_sets in expected.items():
        family = families[name]
        assert family.type in ("counter", "histogram"), name
        keys = [k for k in family.samples[0].labels if k != "le"]
        # A counter's `_created` and a histogram's `_created`/`_sum` aside, every sample is a count: all 0.
        counts = [s for s in family.samples if s.name in (f"{name}_total", f"{name}_bucket", f"{name}_count")]
        present = {tuple(s.labels[k] for k in keys) for s in counts}
        assert label_sets <= present, f"{name}: missing {label_sets - present}"
        assert all(s.value == 0 for s in counts), name
        if family.type == "histogram":
            for labels in label_sets:
                buckets = [
                    s for s in counts if s.name.endswith("_bucket") and tuple(s.labels[k] for k in keys) == labels
                ]
                assert buckets, (name, labels)
                assert buckets[-1].labels["le"] == "+Inf", (name, labels)


def test_a_burst_right_after_the_start_raises_the_series_seen_at_the_start(client: TestClient):
    before = client.get("/metrics").text
    for _ in range(30):
        client.post("/predict", json={"items": [SETOSA]})
    after = client.get("/metrics").text
    count = "iris_http_request_duration_seconds_count"
    # A first scrape before the burst already has the series, at 0: increase() over both is 30.
    assert sample(before, count, handler="/predict", method="POST") == 0
    assert sample(after, count, handler="/predict", method="POST") == 30
    for feature in FEATURES:
        assert sample(before, "iris_input_centimeters_count", feature=feature) == 0
        assert sample(after, "iris_input_centimeters_count", feature=feature) == 30
