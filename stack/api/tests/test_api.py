"""The HTTP API end to end through FastAPI's test client."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import MAX_BODY_BYTES, create_app
from app.model import ModelError
from tests.flowers import SETOSA, VERSICOLOR, VIRGINICA


def test_health_is_ok_once_the_model_is_loaded(client: TestClient):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["model_loaded"] is True
    assert body["model_version"] == client.get("/model").json()["version"]


def test_predict_names_each_species(client: TestClient):
    response = client.post("/predict", json={"items": [SETOSA, VERSICOLOR, VIRGINICA]})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["species"] for p in predictions] == ["setosa", "versicolor", "virginica"]
    assert [p["class_index"] for p in predictions] == [0, 1, 2]
    for p in predictions:
        assert set(p["probabilities"]) == {"setosa", "versicolor", "virginica"}
        assert sum(p["probabilities"].values()) == pytest.approx(1.0)
        assert max(p["probabilities"], key=p["probabilities"].get) == p["species"]


def test_predict_accepts_integers_and_the_range_limits(client: TestClient):
    flower = {"sepal_length": 50, "sepal_width": 3, "petal_length": 1e-9, "petal_width": 0.2}
    response = client.post("/predict", json={"items": [flower]})
    assert response.status_code == 200, response.text


def test_predict_accepts_a_full_batch(client: TestClient):
    response = client.post("/predict", json={"items": [VERSICOLOR] * 1000})
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 1000


def test_model_metadata(client: TestClient):
    meta = client.get("/model").json()
    assert meta["model"] == "logistic-regression"
    assert meta["classes"] == ["setosa", "versicolor", "virginica"]
    assert {"accuracy", "version", "trained_at", "libraries"} <= set(meta)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"items": [{**SETOSA, "sepal_length": 0}]}, "items[0].sepal_length: must be a finite number of centimetres"),
        ({"items": [{**SETOSA, "petal_width": 51}]}, "items[0].petal_width: must be a finite number"),
        ({"items": [SETOSA, {**SETOSA, "sepal_width": -1}]}, "items[1].sepal_width: must be"),
        ({"items": [{**SETOSA, "sepal_width": "3.5"}]}, "got '3.5'"),
        ({"items": [{**SETOSA, "sepal_width": True}]}, "got True"),
        ({"items": [{**SETOSA, "sepal_width": None}]}, "got None"),
        ({"items": [{**SETOSA, "colour": "blue"}]}, "items[0].colour: unknown field (allowed: sepal_length, "),
        ({"items": [SETOSA], "model": "rf"}, "model: unknown field (allowed: items)"),
        ({"items": [{"sepal_length": 5.1}]}, "items[0].sepal_width: required field is missing"),
        ({"items": []}, "items: must be a list of 1 to 1000 flowers"),
        ({"items": [SETOSA] * 1001}, "items: must be a list of 1 to 1000 flowers"),
        ({"items": SETOSA}, "items: must be a list of 1 to 1000 flowers"),
        ({}, "items: required field is missing"),
        ([SETOSA], 'request body must be a JSON object like {"items": [...]}'),
    ],
)
def test_invalid_input_gets_422_with_a_readable_message(client: TestClient, body, message: str):
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_the_range_message_says_the_range(client: TestClient):
    response = client.post("/predict", json={"items": [{**SETOSA, "sepal_length": 1000}]})
    assert response.json()["detail"] == (
        "items[0].sepal_length: must be a finite number of centimetres with 0 < x ≤ 50, got 1000"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"items": [{"sepal_length": NaN', "not valid JSON"),
        ('{"items": [{"sepal_length": NaN, "sepal_width": 1, "petal_length": 1, "petal_width": 1}]}', "got nan"),
        ('{"items": [{"sepal_length": 1e999, "sepal_width": 1, "petal_length": 1, "petal_width": 1}]}', "got inf"),
        ("", "request body is missing"),
    ],
)
def test_raw_bodies_get_422(client: TestClient, content: str, message: str):
    response = client.post("/predict", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert message in response.json()["detail"]


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({}, "no Content-Type header"),
        ({"content-type": "text/plain"}, "got Content-Type: text/plain"),
        ({"content-type": "application/x-www-form-urlencoded"}, "got Content-Type: application/x-www-form-urlencoded"),
    ],
)
def test_a_json_body_sent_without_the_json_content_type_gets_415_naming_it(
    client: TestClient, headers: dict[str, str], named: str
):
    response = client.post("/predict", content=json.dumps({"items": [SETOSA]}), headers=headers)
    assert response.status_code == 415
    detail = response.json()["detail"]
    assert "Content-Type: application/json" in detail
    assert named in detail
    assert "JSON object" not in detail


@pytest.mark.parametrize(
    "media_type", ["application/json; charset=utf-8", "Application/JSON", "application/vnd.iris+json"]
)
def test_json_content_types_with_parameters_or_suffix_are_accepted(client: TestClient, media_type: str):
    response = client.post("/predict", content=json.dumps({"items": [SETOSA]}), headers={"content-type": media_type})
    assert response.status_code == 200, response.text


def test_many_problems_are_summarised(client: TestClient):
    bad = {"sepal_length": -1, "sepal_width": -1, "petal_length": -1, "petal_width": -1}
    body = client.post("/predict", json={"items": [bad] * 10}).json()
    assert body["detail"].endswith("(and 37 more problems)")
    assert len(body["errors"]) == 20


def test_oversized_body_is_refused_by_content_length(client: TestClient):
    padding = " " * MAX_BODY_BYTES
    response = client.post("/predict", content=json.dumps({"items": [SETOSA]}) + padding)
    assert response.status_code == 413
    assert response.json()["detail"] == "request body is larger than 1 MiB (1048576 bytes)"


def test_a_body_of_exactly_the_limit_is_read(client: TestClient):
    content = json.dumps({"items": [SETOSA]})
    content += " " * (MAX_BODY_BYTES - len(content))
    response = client.post("/predict", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 200


def test_every_answer_names_the_replica(client: TestClient):
    responses = [
        client.get("/health"),
        client.post("/predict", json={"items": []}),
        client.get("/no/such/path"),
        client.post("/predict", content=" " * (MAX_BODY_BYTES + 1)),
    ]
    assert [r.headers["x-iris-replica"] for r in responses] == ["test-replica"] * 4


def test_replica_defaults_to_the_hostname(model_file: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("socket.gethostname", lambda: "api-7f3c")
    with TestClient(create_app(model_file)) as client:
        assert client.get("/health").headers["x-iris-replica"] == "api-7f3c"


def test_without_a_model_file_the_app_is_not_made(tmp_path: Path):
    with pytest.raises(ModelError, match=r"absent.json` does not exist"):
        create_app(tmp_path / "absent.json")


def test_a_corrupt_model_file_is_reported(tmp_path: Path):
    path = tmp_path / "model.json"
    path.write_text("{not json")
    with pytest.raises(ModelError, match="is not valid JSON"):
        create_app(path)


def test_model_path_comes_from_the_environment(model_file: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("IRIS_MODEL_PATH", str(model_file))
    with TestClient(create_app()) as client:
        assert client.get("/health").status_code == 200
    monkeypatch.setenv("IRIS_MODEL_PATH", str(model_file.with_name("other.json")))
    with pytest.raises(ModelError, match=re.escape("other.json")):
        create_app()


def _with_metadata(model_file: Path, tmp_path: Path, **changes) -> Path:
    data = json.loads(model_file.read_text())
    data["metadata"].update(changes)
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(data))
    return path


def test_a_model_whose_version_is_not_a_string_is_refused_at_load(model_file: Path, tmp_path: Path):
    # Issue 16: such a file used to load, then every /health answered 500 while /predict worked.
    path = _with_metadata(model_file, tmp_path, version=20260101)
    with pytest.raises(ModelError, match=r"metadata.version: Input should be a valid string \(got 20260101\)"):
        create_app(path)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"version": ""}, "metadata.version: String should have at least 1 character"),
        ({"version": None}, "metadata.version: Input should be a valid string"),
        ({"accuracy": "0.9"}, "metadata.accuracy: Input should be a valid number"),
        ({"accuracy": 1.5}, "metadata.accuracy: Input should be less than or equal to 1"),
        ({"trained_at": "yesterday"}, "metadata.trained_at: Input should be a valid datetime"),
        ({"trained_at": "2026-01-01T00:00:00"}, "metadata.trained_at: Input should have timezone info"),
        ({"model": 7}, "metadata.model: Input should be a valid string"),
        ({"classes": ["a", "a", "b"]}, "metadata.classes has duplicates"),
        ({"features": ["a", "b", "c", "d"]}, "metadata.features is ['a', 'b', 'c', 'd']"),
        # /model could not answer these (JSON has no NaN): refused at load too.
        ({"notes": {"loss": [0.5, float("nan")]}}, "metadata.notes.loss.1 is not a finite number"),
        ({"train_samples": float("inf")}, "metadata.train_samples is not a finite number"),
    ],
)
def test_bad_metadata_is_refused_at_load_with_the_field_named(model_file: Path, tmp_path: Path, changes, problem):
    with pytest.raises(ModelError, match=re.escape(problem)):
        create_app(_with_metadata(model_file, tmp_path, **changes))


def _serve(env_model_path: Path) -> subprocess.CompletedProcess:
    """Start the API as the image does, with a 10 s cap: a good model would keep it running."""
    command = [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app_or_exit", "--port", "0"]
    env = {**os.environ, "IRIS_MODEL_PATH": str(env_model_path)}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=10, check=False)


def test_the_server_exits_at_startup_with_one_line_naming_the_bad_field(model_file: Path, tmp_path: Path):
    result = _serve(_with_metadata(model_file, tmp_path, version=3))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("iris-api: cannot start: model file `")
    assert "metadata.version: Input should be a valid string (got 3)" in result.stderr


def test_the_server_exits_at_startup_without_a_model_file(tmp_path: Path):
    result = _serve(tmp_path / "absent.json")
    assert (result.returncode, result.stderr.count("\n")) == (1, 1)
    assert "absent.json` does not exist" in result.stderr


def test_docs_and_openapi_are_served(client: TestClient):
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/health", "/predict", "/model", "/metrics"} <= set(schema["paths"])
    flower = schema["components"]["schemas"]["Flower"]
    assert flower["additionalProperties"] is False
    assert flower["properties"]["sepal_length"]["exclusiveMinimum"] == 0
    assert flower["properties"]["sepal_length"]["maximum"] == 50
