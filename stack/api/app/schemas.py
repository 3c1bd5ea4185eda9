"""Request and response bodies of the HTTP API.

The request shape is the course's (`{"items": [{sepal_length, ...}]}`) so that
existing clients keep working; the limits are ours.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

MIN_CM, MAX_CM = 0, 50
MAX_ITEMS = 1000
RANGE_TEXT = f"a finite number of centimetres with {MIN_CM} < x ≤ {MAX_CM}"

# strict: "5.1" and true are not measurements, even though Python could convert them.
Measurement = Annotated[
    float,
    Field(strict=True, gt=MIN_CM, le=MAX_CM, allow_inf_nan=False, description=RANGE_TEXT, examples=[5.1]),
]


class Flower(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sepal_length: Measurement
    sepal_width: Measurement
    petal_length: Measurement
    petal_width: Measurement


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"items": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}
            ]
        },
    )

    items: list[Flower] = Field(min_length=1, max_length=MAX_ITEMS)


class Prediction(BaseModel):
    class_index: int
    species: str
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    model_version: str
    predictions: list[Prediction]


class Health(BaseModel):
    status: str
    model_loaded: bool
    model_version: str
    replica: str


class ErrorBody(BaseModel):
    detail: str
    errors: list[str] = []


ModelMetadata = dict[str, Any]


def describe_error(error: dict[str, Any]) -> str:
    """One pydantic/FastAPI validation error as a sentence a person can act on."""
    kind = error.get("type", "")
    loc = [part for part in error.get("loc", ()) if part != "body"]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    if kind == "json_invalid":
        return f"request body is not valid JSON: {error.get('ctx', {}).get('error', 'parse error')}"
    if not where:
        if kind == "missing":
            return 'request body is missing: send {"items": [{"sepal_length": ..., ...}]}'
        return 'request body must be a JSON object like {"items": [...]}'
    if kind == "extra_forbidden":
        allowed = "items" if len(loc) == 1 else ", ".join(Flower.model_fields)
        return f"{where}: unknown field (allowed: {allowed})"
    if kind == "missing":
        return f"{where}: required field is missing"
    if loc[-1] in Flower.model_fields and len(loc) == 3:
        return f"{where}: must be {RANGE_TEXT}, got {_short(error.get('input'))}"
    if loc == ["items"] and kind in ("too_short", "too_long", "list_type"):
        return f"items: must be a list of 1 to {MAX_ITEMS} flowers"
    return f"{where}: {error.get('msg', 'invalid value')}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
