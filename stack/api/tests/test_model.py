"""The training script's output and the numpy evaluator the API serves it with."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import sklearn

import train
from app.model import FEATURES, IrisModel, ModelError, load_model


def test_numpy_evaluator_matches_sklearn_on_every_flower():
    iris, x_train, _, y_train, _ = train.split_data()
    pipeline = train.logistic_regression().fit(x_train, y_train)
    served = IrisModel.from_dict(train.train())
    np.testing.assert_allclose(served.predict_proba(iris.data), pipeline.predict_proba(iris.data), rtol=0, atol=1e-9)


def test_metadata_records_accuracy_classes_versions_and_date():
    meta = train.train()["metadata"]
    _, _, x_test, _, y_test = train.split_data()
    served = IrisModel.from_dict(train.train())
    held_out = np.mean(served.predict_proba(x_test).argmax(axis=1) == y_test)
    assert meta["accuracy"] == pytest.approx(held_out, abs=1e-4)
    assert meta["accuracy"] >= 0.9
    assert meta["classes"] == ["setosa", "versicolor", "virginica"]
    assert meta["libraries"]["scikit-learn"] == sklearn.__version__
    assert meta["libraries"]["numpy"] == np.__version__
    assert datetime.fromisoformat(meta["trained_at"]).tzinfo is not None
    assert (meta["train_samples"], meta["test_samples"]) == (105, 45)


def test_split_is_stratified_and_fixed():
    first, second = train.split_data(), train.split_data()
    np.testing.assert_array_equal(first[2], second[2])
    assert np.bincount(first[4]).tolist() == [15, 15, 15]


def test_version_depends_on_parameters_only():
    assert train.train()["metadata"]["version"] == train.train()["metadata"]["version"]


def test_main_writes_a_loadable_model_file(tmp_path: Path):
    path = tmp_path / "nested" / "model.json"
    assert train.main(["--output", str(path)]) == 0
    assert load_model(path).classes == ("setosa", "versicolor", "virginica")


def test_probabilities_stay_finite_at_the_input_extremes():
    model = IrisModel.from_dict(train.train())
    proba = model.predict_proba(np.array([[50.0, 50.0, 50.0, 50.0], [1e-300, 1e-300, 1e-300, 1e-300]]))
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def _broken(change) -> dict:
    data = train.train()
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "not an `iris-logreg/1` model file"),
        ({"format": "pickle"}, "not an `iris-logreg/1` model file"),
        (_broken(lambda d: d.pop("params")), "malformed model file"),
        (_broken(lambda d: d["params"].update(coef=[[1.0, 2.0]])), "`coef` has shape (1, 2), expected (3, 4)"),
        (_broken(lambda d: d["params"].update(mean=7.0)), "`mean` has shape (), expected (4,)"),
        (_broken(lambda d: d["params"].update(mean="abc")), "malformed model file"),
        (_broken(lambda d: d["params"]["intercept"].__setitem__(0, float("nan"))), "`intercept` holds non-finite"),
        (_broken(lambda d: d["params"]["scale"].__setitem__(0, 0.0)), "positive scales"),
    ],
)
def test_unusable_model_data_is_rejected_with_a_reason(data, message):
    with pytest.raises(ModelError, match=re.escape(message)):
        IrisModel.from_dict(data)


def test_missing_and_corrupt_files_are_reported(tmp_path: Path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "absent.json")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text(json.dumps(train.train())[:100])
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(corrupt)
    with pytest.raises(ModelError, match="cannot read"):
        load_model(tmp_path)


def test_training_stats_describe_the_training_split():
    _, x_train, _, _, _ = train.split_data()
    features = train.train()["metadata"]["training"]["features"]
    assert tuple(features) == FEATURES
    for column, name in enumerate(FEATURES):
        values, stats = x_train[:, column], features[name]
        assert stats["mean"] == pytest.approx(values.mean(), abs=1e-6)
        assert stats["std"] == pytest.approx(values.std(), abs=1e-6)
        bounds = stats["buckets"]
        assert bounds == sorted(set(bounds))
        assert (bounds[0], bounds[-1]) == (values.min(), values.max())
        assert 6 <= len(bounds) <= len(train.BUCKET_QUANTILES)
        assert stats["training_cumulative"] == pytest.approx([np.mean(values <= b) for b in bounds], abs=1e-6)
        assert stats["training_cumulative"][-1] == 1


def test_training_time_is_recorded():
    duration = train.train()["metadata"]["training"]["duration_seconds"]
    assert 0 < duration < 60


def _with_training(change) -> dict:
    data = train.train()
    change(data["metadata"]["training"])
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_with_training(lambda t: t.pop("features")), "metadata.training.features: Field required"),
        (_with_training(lambda t: t.update(duration_seconds="1s")), "metadata.training.duration_seconds"),
        (_with_training(lambda t: t["features"].pop("sepal_width")), "features must be ['sepal_length', 'sepal_w"),
        (_with_training(lambda t: t["features"]["petal_width"].update(std=0.0)), "std: Input should be greater than 0"),
        (_with_training(lambda t: t["features"]["petal_width"].update(buckets=[2.0, 1.0])), "strictly increasing"),
        (_with_training(lambda t: t["features"]["petal_width"]["buckets"].pop()), "one fraction per bucket"),
        (_with_training(lambda t: t["features"]["petal_width"].update(mean=float("nan"))), "mean is not a finite"),
    ],
)
def test_unusable_training_stats_are_rejected_with_a_reason(data, message):
    with pytest.raises(ModelError, match=re.escape(message)):
        IrisModel.from_dict(data)
