"""Property tests: no request body, however odd, makes the API answer 500."""

from __future__ import annotations

import json
import math

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.main import create_app
from app.schemas import MAX_CM, MIN_CM
from tests.flowers import SETOSA

FIELDS = list(SETOSA)
# A client fixture is reused across examples on purpose: the app is stateless per request.
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([0, 0.0, -0.0, MAX_CM, math.nextafter(MAX_CM, math.inf), 5e-324, 1e308]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30,
)
# Mostly well-formed flowers with odd values, so that validation is reached, not just the shape check.
odd_flowers = st.fixed_dictionaries(
    {name: st.one_of(numbers, scalars, json_values) for name in FIELDS},
    optional={"colour": json_values},
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"items": st.lists(odd_flowers, max_size=5)}),
    st.fixed_dictionaries({"items": json_values}),
)


@pytest.fixture(scope="module")
def api(model_file) -> TestClient:
    with TestClient(create_app(model_file, replica="prop")) as client:
        yield client


def post_json(client: TestClient, body) -> object:
    # allow_nan: Python's json (and so FastAPI) reads NaN and Infinity, so clients can send them.
    return client.post("/predict", content=json.dumps(body), headers={"content-type": "application/json"})


@SETTINGS
@given(body=bodies)
def test_any_json_body_gets_200_or_422(api: TestClient, body):
    response = post_json(api, body)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert response.json()["detail"]


@SETTINGS
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_byte_string_never_fails_the_server(api: TestClient, raw: bytes):
    response = api.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code in (200, 422), response.text


@SETTINGS
@given(
    flowers=st.lists(
        st.fixed_dictionaries(
            {name: st.floats(min_value=MIN_CM, max_value=MAX_CM, exclude_min=True) for name in FIELDS}
        ),
        min_size=1,
        max_size=20,
    )
)
def test_valid_flowers_always_get_a_prediction(api: TestClient, flowers):
    response = post_json(api, {"items": flowers})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == len(flowers)
    for p in predictions:
        assert sum(p["probabilities"].values()) == pytest.approx(1.0)


@pytest.mark.parametrize("depth", [100, 10_000, 300_000])
def test_deep_nesting_is_refused_without_a_crash(api: TestClient, depth: int):
    for content in ("[" * depth + "]" * depth, '{"items":' + "[" * depth + "]" * depth + "}"):
        response = api.post("/predict", content=content, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["detail"] == "request body is not valid JSON: nested too deeply" or depth == 100


def test_huge_numbers_are_refused(api: TestClient):
    content = '{"items": [{"sepal_length": 1%s, "sepal_width": 1, "petal_length": 1, "petal_width": 1}]}' % ("0" * 5000)
    response = api.post("/predict", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("request body is not valid JSON: Exceeds the limit")
