"""Schemathesis against the app's own /openapi.json: hostile generated requests, no server error.

Every operation of the schema is tested in schemathesis's examples, coverage and fuzzing
phases, with schema-conforming (positive) and schema-violating (negative) data, and every
answer goes through all of schemathesis's built-in checks: `not_a_server_error` (no 5xx),
`response_schema_conformance`, status code, content type and headers as documented,
negative data rejected with a 4xx and positive data accepted. The app runs in-process.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis

import train
from app.main import create_app

# Fuzzing examples per operation, shared between positive and negative data. Operations
# without parameters or a body have only one possible request, so /predict carries the bulk.
MAX_EXAMPLES = 1000
MIN_CASES = 1000


# The app reads its model at each start of its lifespan, and schemathesis starts and ends
# that once per test, so the model file lives as long as this module's tests.
MODEL_DIR = tempfile.TemporaryDirectory(prefix="iris-schemathesis-")
MODEL_FILE = Path(MODEL_DIR.name) / "model.json"
MODEL_FILE.write_text(json.dumps(train.train()))
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(MODEL_FILE, replica="schemathesis"))
schema.config.generation.update(max_examples=MAX_EXAMPLES)
OPERATIONS = {result.ok().label for result in schema.get_all_operations()}
CASES: Counter[tuple[str, str]] = Counter()
FAILED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _remove_the_model_file_afterwards() -> Iterator[None]:
    yield
    MODEL_DIR.cleanup()


@schema.parametrize()
def test_generated_requests_get_no_server_error(case: schemathesis.Case):
    mode = case.meta.generation.mode.value if case.meta else "explicit"
    CASES[case.operation.label, mode] += 1
    try:
        response = case.call_and_validate()
        assert response.status_code < 500, response.text
    except BaseException:
        FAILED[case.operation.label] += 1  # shrinking replays a failing case, so these are tries
        raise


TESTED_NAME = test_generated_requests_get_no_server_error.__name__ + "["


def test_every_operation_got_generated_cases(report: list[str], request: pytest.FixtureRequest):
    """Runs after the generated tests above (pytest keeps a module's order) and counts them."""
    per_operation = Counter()
    for (operation, _), count in CASES.items():
        per_operation[operation] += count
    total = sum(per_operation.values())
    negative = sum(count for (_, mode), count in CASES.items() if mode == "negative")
    report.append(
        f"schemathesis: {total} generated requests ({negative} with schema-violating data) against "
        + ", ".join(f"{operation} ×{count}" for operation, count in sorted(per_operation.items()))
        + (f"; {sum(FAILED.values())} failed a check" if FAILED else "; every answer passed every check")
    )
    assert set(per_operation) == OPERATIONS, "run the whole module: some operations got no cases"
    assert total >= MIN_CASES
    # One test per operation, each with an id of its own (see the pytest pin in requirements-dev.txt).
    generated = [item.nodeid for item in request.session.items if item.name.startswith(TESTED_NAME)]
    assert len(set(generated)) == len(generated) == len(OPERATIONS), generated
    assert negative > 0
    assert schema.config.checks.not_a_server_error.enabled
    assert schema.config.checks.response_schema_conformance.enabled
