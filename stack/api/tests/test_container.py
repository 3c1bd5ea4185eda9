"""The built image, run hardened as the stack runs it (needs Docker and a built image).

    IRIS_API_IMAGE=iris-api:dev pytest tests/test_container.py

Skipped when IRIS_API_IMAGE is not set, so the plain test run needs no Docker; with CI=true they
fail instead (scripts/test builds the image and runs them once the Docker-backed tests have).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.flowers import SETOSA, VIRGINICA

IMAGE = os.environ.get("IRIS_API_IMAGE")
IN_CI = os.environ.get("CI") == "true"
pytestmark = pytest.mark.skipif(not IMAGE and not IN_CI, reason="set IRIS_API_IMAGE to a built API image to test it")


@pytest.fixture(autouse=True)
def _an_image_in_ci() -> None:
    assert IMAGE, "CI=true but IRIS_API_IMAGE is not set: in CI the container tests run, never skip"


HARDENED = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]


def docker(*args: str) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"docker {' '.join(args)} failed: {result.stderr.strip()}"
    return result.stdout.strip()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.5)


def health_state(name: str) -> dict:
    return json.loads(docker("inspect", "--format", "{{json .State.Health}}", name))


def http(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def run_api() -> Iterator[Callable[..., tuple[str, str]]]:
    started: list[str] = []

    def run(*extra: str) -> tuple[str, str]:
        name = f"scratch-iris-api-test-{uuid.uuid4().hex[:8]}"
        docker("run", "--detach", "--name", name, *HARDENED, "--publish", "127.0.0.1::8000", *extra, IMAGE)
        started.append(name)
        port = docker("port", name, "8000/tcp").splitlines()[0].rsplit(":", 1)[1]
        return name, f"http://127.0.0.1:{port}"

    yield run
    for name in started:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


def test_hardened_container_serves_predictions_as_uid_10001(run_api):
    name, url = run_api()
    wait_for(lambda: health_state(name)["Status"] == "healthy", "the container's health check to pass")
    assert docker("exec", name, "id", "-u") == "10001"
    status, health = http(f"{url}/health")
    assert (status, health["status"], health["model_loaded"]) == (200, "ok", True)
    status, body = http(f"{url}/predict", {"items": [SETOSA, VIRGINICA]})
    assert status == 200
    assert [p["species"] for p in body["predictions"]] == ["setosa", "virginica"]
    status, meta = http(f"{url}/model")
    assert status == 200
    assert meta["accuracy"] >= 0.9


def test_without_a_model_the_container_exits_at_once_with_one_line():
    command = ["docker", "run", "--rm", *HARDENED, "--env", "IRIS_MODEL_PATH=/nonexistent/model.json", IMAGE]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr == "iris-api: cannot start: model file `/nonexistent/model.json` does not exist\n"
