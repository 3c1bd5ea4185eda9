"""Train the Iris classifier and export it as a JSON model file.

The exported file holds plain numbers (scaler mean/scale, coefficients,
intercepts) instead of a pickle: the API evaluates it with numpy alone, so the
runtime image needs no scikit-learn and loading a model file never runs code.

    python3 train.py --output model.json   # train and write the model file
    python3 train.py --compare             # held-out accuracy and cost vs RandomForest(200)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sklearn
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from app.model import FEATURES, MODEL_FORMAT, IrisModel

SEED = 42
TEST_SIZE = 0.3
# Histogram bounds of the API's input monitoring: the training data's deciles, with its minimum and
# maximum, so each bucket holds about a tenth of the training inputs and drift shows as a shift.
BUCKET_QUANTILES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def split_data():
    """The fixed stratified split every model here is trained and scored on."""
    iris = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data, iris.target, test_size=TEST_SIZE, stratify=iris.target, random_state=SEED
    )
    return iris, x_train, x_test, y_train, y_test


def logistic_regression() -> Pipeline:
    # lbfgs fits a multinomial (softmax) model for 3 classes.
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def random_forest() -> RandomForestClassifier:
    """The course's model, kept only as the yardstick."""
    return RandomForestClassifier(n_estimators=200, random_state=SEED)


def feature_stats(x_train: np.ndarray) -> dict:
    """Per feature: the training mean and standard deviation, histogram bounds for the live inputs,
    and the fraction of training inputs at or below each bound (what the live histogram is compared to).
    """
    stats = {}
    for column, name in enumerate(FEATURES):
        values = x_train[:, column]
        # Rounded to 0.001 cm (the data has 0.1 cm resolution); ties collapse to one bound.
        bounds = np.unique(np.round(np.quantile(values, BUCKET_QUANTILES), 3))
        stats[name] = {
            "mean": round(float(values.mean()), 6),
            "std": round(float(values.std()), 6),
            "buckets": bounds.tolist(),
            "training_cumulative": [round(float(np.mean(values <= bound)), 6) for bound in bounds],
        }
    return stats


def export(
    pipeline: Pipeline,
    *,
    accuracy: float,
    classes: list[str],
    n_train: int,
    n_test: int,
    x_train: np.ndarray,
    fit_seconds: float,
) -> dict:
    scaler: StandardScaler = pipeline[0]
    logreg: LogisticRegression = pipeline[-1]
    params = {
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "coef": logreg.coef_.tolist(),
        "intercept": logreg.intercept_.tolist(),
    }
    # Same parameters give the same version, whichever build trained them.
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    metadata = {
        "model": "logistic-regression",
        "version": digest[:12],
        "accuracy": round(accuracy, 4),
        "classes": classes,
        "features": list(FEATURES),
        "split": {"test_size": TEST_SIZE, "random_state": SEED, "stratified": True},
        "train_samples": n_train,
        "test_samples": n_test,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "libraries": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
        },
        # For monitoring (the API exports these; its histograms use the buckets).
        "training": {"duration_seconds": round(fit_seconds, 6), "features": feature_stats(x_train)},
    }
    return {"format": MODEL_FORMAT, "metadata": metadata, "params": params}


def train() -> dict:
    iris, x_train, x_test, y_train, y_test = split_data()
    start = time.perf_counter()
    pipeline = logistic_regression().fit(x_train, y_train)
    fit_seconds = time.perf_counter() - start
    accuracy = float(pipeline.score(x_test, y_test))
    classes = [str(name) for name in iris.target_names]
    return export(
        pipeline,
        accuracy=accuracy,
        classes=classes,
        n_train=len(y_train),
        n_test=len(y_test),
        x_train=x_train,
        fit_seconds=fit_seconds,
    )


def _seconds_per_call(fn, repeat: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def compare() -> None:
    """Print held-out and cross-validated accuracy and prediction cost of both models."""
    iris, x_train, x_test, y_train, y_test = split_data()
    logreg = logistic_regression().fit(x_train, y_train)
    forest = random_forest().fit(x_train, y_train)
    served = IrisModel.from_dict(train())
    one = x_test[:1]
    batch = np.repeat(x_test, 1000 // len(x_test) + 1, axis=0)[:1000]
    cv = RepeatedStratifiedKFold(n_splits=5, n_repeats=10, random_state=SEED)

    print(f"held-out split: {len(y_train)} train / {len(y_test)} test, stratified, seed {SEED}")
    # The served evaluator has the sklearn pipeline's cross-validation score by
    # construction (tests check that their probabilities agree).
    rows = [
        ("logistic regression (sklearn)", logistic_regression(), logreg.predict_proba),
        ("logistic regression (numpy, served)", logistic_regression(), served.predict_proba),
        ("random forest, 200 trees", random_forest(), forest.predict_proba),
    ]
    for name, estimator, predict in rows:
        held_out = float(np.mean(predict(x_test).argmax(axis=1) == y_test))
        scores = cross_val_score(estimator, iris.data, iris.target, cv=cv)
        single = _seconds_per_call(lambda p=predict: p(one), 200)
        per_item = _seconds_per_call(lambda p=predict: p(batch), 20) / len(batch)
        print(
            f"{name:38} held-out {held_out:.4f}  cv(5x10) {scores.mean():.4f}±{scores.std():.4f}  "
            f"1 item {single * 1e6:9.1f} µs  per item in 1000-batch {per_item * 1e6:8.3f} µs"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="where to write the model JSON")
    parser.add_argument("--compare", action="store_true", help="compare with RandomForest(200)")
    args = parser.parse_args(argv)
    if not args.output and not args.compare:
        parser.error("give --output PATH and/or --compare")
    if args.output:
        model = train()
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(model, indent=2) + "\n")
        meta = model["metadata"]
        print(f"wrote {args.output}: {meta['model']} {meta['version']} held-out accuracy {meta['accuracy']}")
    if args.compare:
        compare()
    return 0


if __name__ == "__main__":
    sys.exit(main())
