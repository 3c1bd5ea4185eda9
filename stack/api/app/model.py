"""The served model: a standardized multinomial logistic regression evaluated with numpy.

train.py writes the model file; this module reads and checks it, so that a bad
file is reported at startup with a reason instead of failing at request time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

MODEL_FORMAT = "iris-logreg/1"
# Column order of the model's input, and the API's field names.
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
N_FEATURES = len(FEATURES)


class ModelError(Exception):
    """The model file is missing or not a usable model."""


Finite = Annotated[float, Field(allow_inf_nan=False)]


class FeatureStats(BaseModel):
    """One feature's training distribution, for the API's input monitoring (see train.py)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    mean: Finite
    std: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    buckets: list[Finite] = Field(min_length=1, max_length=30)
    training_cumulative: list[Annotated[float, Field(ge=0, le=1)]]

    @model_validator(mode="after")
    def consistent(self) -> FeatureStats:
        if any(a >= b for a, b in zip(self.buckets, self.buckets[1:], strict=False)):
            raise ValueError("buckets must be strictly increasing")
        if len(self.training_cumulative) != len(self.buckets):
            raise ValueError("training_cumulative needs one fraction per bucket")
        if any(a > b for a, b in zip(self.training_cumulative, self.training_cumulative[1:], strict=False)):
            raise ValueError("training_cumulative must not decrease")
        return self


class Training(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    duration_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    features: dict[str, FeatureStats]

    @model_validator(mode="after")
    def every_feature(self) -> Training:
        if tuple(self.features) != FEATURES:
            raise ValueError(f"features must be {list(FEATURES)} in that order, got {list(self.features)}")
        return self


class Metadata(BaseModel):
    """What the API reads from a model file's `metadata` (anything else is passed through to /model).

    Strict: a version that is a number, say, is refused at load instead of failing /health later.
    """

    model_config = ConfigDict(strict=True, extra="allow")

    model: str = Field(min_length=1)
    version: str = Field(min_length=1)
    accuracy: float = Field(ge=0, le=1, allow_inf_nan=False)
    classes: list[str] = Field(min_length=2)
    features: list[str]
    trained_at: AwareDatetime = Field(strict=False)
    training: Training


def _non_finite(value: Any, where: str = "metadata") -> str | None:
    """Where in `value` a NaN or infinity is (JSON answers cannot carry one: /model would fail)."""
    if isinstance(value, float) and not np.isfinite(value):
        return where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return next((found for key, item in items if (found := _non_finite(item, f"{where}.{key}"))), None)


def _describe(err: ValidationError) -> str:
    """A pydantic error as one line: `metadata.version: Input should be a valid string (got 3)`."""
    problems = []
    for error in err.errors():
        where = ".".join(str(part) for part in ("metadata", *error["loc"]))
        got = repr(error.get("input"))
        problems.append(f"{where}: {error['msg']} (got {got if len(got) <= 40 else got[:37] + '...'})")
    return "; ".join(problems)


@dataclass(frozen=True)
class IrisModel:
    mean: np.ndarray  # (features,)
    scale: np.ndarray  # (features,)
    coef: np.ndarray  # (classes, features)
    intercept: np.ndarray  # (classes,)
    classes: tuple[str, ...]
    metadata: dict[str, Any]
    checked: Metadata  # the metadata as checked and typed (trained_at a datetime, training stats)

    @classmethod
    def from_dict(cls, data: Any) -> IrisModel:
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise ModelError(f"not an `{MODEL_FORMAT}` model file")
        try:
            params, metadata = data["params"], dict(data["metadata"])
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"malformed model file: {err!r}") from err
        if where := _non_finite(metadata):
            raise ModelError(f"{where} is not a finite number")
        try:
            checked = Metadata.model_validate(metadata)
        except ValidationError as err:
            raise ModelError(f"bad model metadata: {_describe(err)}") from err
        if tuple(checked.features) != FEATURES:
            raise ModelError(f"metadata.features is {checked.features}, expected {list(FEATURES)}")
        if len(set(checked.classes)) != len(checked.classes):
            raise ModelError(f"metadata.classes has duplicates: {checked.classes}")
        classes = tuple(checked.classes)
        try:
            arrays = {key: np.asarray(params[key], dtype=np.float64) for key in ("mean", "scale", "coef", "intercept")}
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"malformed model file: {err!r}") from err
        n_classes = len(classes)
        expected = {
            "mean": (N_FEATURES,),
            "scale": (N_FEATURES,),
            "coef": (n_classes, N_FEATURES),
            "intercept": (n_classes,),
        }
        for key, shape in expected.items():
            if arrays[key].shape != shape:
                raise ModelError(f"`{key}` has shape {arrays[key].shape}, expected {shape}")
            if not np.all(np.isfinite(arrays[key])):
                raise ModelError(f"`{key}` holds non-finite numbers")
        if n_classes < 2 or np.any(arrays["scale"] <= 0):
            raise ModelError("model needs at least 2 classes and positive scales")
        return cls(classes=classes, metadata=metadata, checked=checked, **arrays)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for rows of (sepal_length, sepal_width, petal_length, petal_width)."""
        logits = ((x - self.mean) / self.scale) @ self.coef.T + self.intercept
        # Shifting by the row maximum keeps exp() from overflowing.
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)


def load_model(path: Path) -> IrisModel:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ModelError(f"model file `{path}` does not exist") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ModelError(f"cannot read model file `{path}`: {err}") from err
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise ModelError(f"model file `{path}` is not valid JSON: {err}") from err
    try:
        return IrisModel.from_dict(data)
    except ModelError as err:
        raise ModelError(f"model file `{path}`: {err}") from err
