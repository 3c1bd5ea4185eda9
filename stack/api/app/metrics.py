"""Prometheus metrics of one app instance, in a registry of its own.

A registry per app (instead of prometheus_client's global one) lets tests build
many apps in one process without "duplicated timeseries" errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from app.model import FEATURES, IrisModel

# Fine at the low end: a prediction takes well under 10 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The top class's probability is at least 1/3 with three classes; below LOW_CONFIDENCE the model
# is close to guessing between two species (the dashboard's "low-confidence rate").
CONFIDENCE_BUCKETS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
LOW_CONFIDENCE = 0.6
# The `status` label's values that every route has from the start (see app.middleware.status_label).
STATUS_CLASSES = ("2xx", "4xx", "5xx", "499")


class ArrayHistogram:
    """Bucket counts and sum of observed values, fed a whole numpy array per call.

    One searchsorted per batch of up to 1000 flowers instead of a Python call per value;
    the event loop is the only writer and reader, so no lock is needed.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, values: np.ndarray) -> None:
        # side="left": a value equal to a bound counts in that bound's bucket (le means ≤).
        slots = np.searchsorted(self.bounds, values, side="left")
        self.counts += np.bincount(slots, minlength=len(self.counts))
        self.sum += float(np.sum(values))

    def cumulative(self) -> list[tuple[str, float]]:
        totals = np.cumsum(self.counts).tolist()
        return [(floatToGoString(bound), total) for bound, total in zip(self.bounds, totals, strict=False)] + [
            ("+Inf", totals[-1])
        ]


class ModelMonitoring(Collector):
    """What the model is asked and how sure it is: histograms with bounds from the model file.

    Each feature's histogram has its own bounds (the training deciles), which one
    prometheus_client Histogram cannot have, hence this collector.
    """

    def __init__(self, model: IrisModel) -> None:
        features = model.checked.training.features
        self.inputs = {name: ArrayHistogram(features[name].buckets) for name in FEATURES}
        self.classes = model.classes
        self.confidence = {species: ArrayHistogram(CONFIDENCE_BUCKETS) for species in model.classes}

    def observe(self, x: np.ndarray, probabilities: np.ndarray, indices: np.ndarray) -> None:
        for column, name in enumerate(FEATURES):
            self.inputs[name].observe(x[:, column])
        top = probabilities.max(axis=1)
        for index in np.unique(indices).tolist():
            self.confidence[self.classes[index]].observe(top[indices == index])

    def collect(self) -> Iterator[Metric]:
        inputs = HistogramMetricFamily(
            "iris_input_centimeters",
            "Measurements sent to /predict, per feature; bounds are the training data's deciles",
            labels=["feature"],
        )
        for name, histogram in self.inputs.items():
            inputs.add_metric([name], histogram.cumulative(), histogram.sum)
        yield inputs
        confidence = HistogramMetricFamily(
            "iris_prediction_confidence",
            "Probability of the predicted species (the largest class probability), by predicted species",
            labels=["species"],
        )
        for species, histogram in self.confidence.items():
            confidence.add_metric([species], histogram.cumulative(), histogram.sum)
        yield confidence


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "iris_http_requests",
            "HTTP requests by route template, method and status class (2xx, 4xx, 5xx; 499: client left first)",
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

        # Numbers, not labels, so that alerts and panels can compare them.
        self.model_accuracy = Gauge(
            "iris_model_accuracy", "Held-out accuracy of the loaded model (0-1)", registry=self.registry
        )
        self.model_trained = Gauge(
            "iris_model_trained_timestamp_seconds",
            "When the loaded model was trained (Unix time)",
            registry=self.registry,
        )
        self.model_training_duration = Gauge(
            "iris_model_training_duration_seconds",
            "How long fitting the loaded model took",
            registry=self.registry,
        )
        self.training_mean = Gauge(
            "iris_training_feature_mean_centimeters",
            "Mean of each feature in the model's training data",
            ["feature"],
            registry=self.registry,
        )
        self.training_stddev = Gauge(
            "iris_training_feature_stddev_centimeters",
            "Standard deviation of each feature in the model's training data",
            ["feature"],
            registry=self.registry,
        )
        self.training_cumulative = Gauge(
            "iris_training_feature_cumulative_ratio",
            "Fraction of the training data at or below each bound of iris_input_centimeters",
            ["feature", "le"],
            registry=self.registry,
        )
        self.monitoring: ModelMonitoring | None = None

    def start_series(self, routes: Iterable[tuple[str, str]]) -> None:
        """Zero series for every (route template, method) the app serves, from the start.

        Prometheus's advice for labelled metrics: a series that appears only with its first
        request has no earlier sample, so rate() and increase() miss a burst right after a
        start; and an error ratio is 0 while all is well, not "no data" (no `or vector(0)`,
        which would show a dead target as "0 errors").
        """
        for handler, method in routes:
            self.latency.labels(handler=handler, method=method)
            for status in STATUS_CLASSES:
                self.requests.labels(handler=handler, method=method, status=status)

    def set_model(self, model: IrisModel) -> None:
        metadata, classes, checked = model.metadata, model.classes, model.checked
        self.model_loaded.set(1)
        self.model_info.labels(
            model=str(metadata.get("model", "")),
            version=str(metadata.get("version", "")),
            accuracy=str(metadata.get("accuracy", "")),
            trained_at=str(metadata.get("trained_at", "")),
        ).set(1)
        self.model_accuracy.set(checked.accuracy)
        self.model_trained.set(checked.trained_at.timestamp())
        self.model_training_duration.set(checked.training.duration_seconds)
        for name, stats in checked.training.features.items():
            self.training_mean.labels(feature=name).set(stats.mean)
            self.training_stddev.labels(feature=name).set(stats.std)
            for bound, fraction in zip(stats.buckets, stats.training_cumulative, strict=True):
                self.training_cumulative.labels(feature=name, le=floatToGoString(bound)).set(fraction)
        self.monitoring = ModelMonitoring(model)
        self.registry.register(self.monitoring)
        # Zero series from the start, so rates and dashboards show every species.
        for species in classes:
            self.predictions.labels(species=species)
