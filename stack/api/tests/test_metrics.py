"""What /metrics exports after some traffic."""

from __future__ import annotations

from fastapi.testclient import TestClient

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
