"""Prometheus metrics of one app instance, in a registry of its own.

A registry per app (instead of prometheus_client's global one) lets tests build
many apps in one process without "duplicated timeseries" errors.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

# Fine at the low end: a prediction takes well under 10 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "iris_http_requests",
            "HTTP requests by route template, method and status class (2xx, 4xx, 5xx)",
            ["handler", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "iris_http_request_duration_seconds",
            "HTTP request duration by route template and method",
            ["handler", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "iris_predictions",
            "Predicted flowers by species",
            ["species"],
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "iris_model_loaded", "1 while a model is loaded and /predict can answer", registry=self.registry
        )
        self.model_info = Gauge(
            "iris_model_info",
            "The loaded model (always 1; the labels carry the information)",
            ["model", "version", "accuracy", "trained_at"],
            registry=self.registry,
        )

    def set_model(self, metadata: dict, classes: tuple[str, ...]) -> None:
        self.model_loaded.set(1)
        self.model_info.labels(
            model=str(metadata.get("model", "")),
            version=str(metadata.get("version", "")),
            accuracy=str(metadata.get("accuracy", "")),
            trained_at=str(metadata.get("trained_at", "")),
        ).set(1)
        # Zero series from the start, so rates and dashboards show every species.
        for species in classes:
            self.predictions.labels(species=species)
