"""Shared fixtures: one model trained per test session, clients of fresh apps, lines for the summary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import train
from app.main import create_app

REPORT = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def report(request: pytest.FixtureRequest) -> list[str]:
    """Lines a test adds to the end of pytest's terminal summary."""
    return request.config.stash.setdefault(REPORT, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    for line in config.stash.get(REPORT, []):
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.json"
    path.write_text(json.dumps(train.train()))
    return path


@pytest.fixture
def client(model_file: Path) -> Iterator[TestClient]:
    # The context manager runs the lifespan, which is where the model loads.
    with TestClient(create_app(model_file, replica="test-replica")) as test_client:
        yield test_client
