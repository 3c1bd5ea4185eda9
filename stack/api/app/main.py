"""The FastAPI application: /health, /predict, /model, /metrics (plus /docs).

Run with `uvicorn --factory app.main:create_app`. The model file comes from
IRIS_MODEL_PATH (default: where the image's build trains it) and is loaded at
startup; without a usable model the app still serves /health (503 with the
reason) so that the container's health check can say what is wrong.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.metrics import Metrics
from app.middleware import BodyLimitMiddleware, MetricsMiddleware, ReplicaHeaderMiddleware
from app.model import FEATURES, IrisModel, ModelError, load_model
from app.schemas import ErrorBody, Health, ModelMetadata, Prediction, PredictRequest, PredictResponse, describe_error

DEFAULT_MODEL_PATH = "/opt/iris/model.json"
MAX_BODY_BYTES = 1 << 20
MAX_LISTED_ERRORS = 20

# uvicorn configures this logger, so messages land in the container log in its format.
log = logging.getLogger("uvicorn.error")


class ModelSlot:
    """The loaded model, or why there is none."""

    def __init__(self) -> None:
        self.model: IrisModel | None = None
        self.reason = "model is still loading"


def create_app(model_path: str | os.PathLike | None = None, replica: str | None = None) -> FastAPI:
    path = Path(model_path or os.environ.get("IRIS_MODEL_PATH") or DEFAULT_MODEL_PATH)
    replica = replica or socket.gethostname()
    metrics = Metrics()
    slot = ModelSlot()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            slot.model = load_model(path)
        except ModelError as err:
            slot.reason = str(err)
            log.error("no model loaded: %s", err)
        else:
            metrics.set_model(slot.model.metadata, slot.model.classes)
            meta = slot.model.metadata
            log.info("loaded model %s %s from %s", meta.get("model"), meta.get("version"), path)
        yield

    app = FastAPI(
        title="Iris API",
        version="1.0.0",
        description="Classifies Iris flowers from sepal and petal measurements (cm).",
        lifespan=lifespan,
    )
    # add_middleware puts each new one outermost: the replica header goes on every
    # answer, and metrics see the 413s of the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)
    app.add_middleware(ReplicaHeaderMiddleware, replica=replica)

    def loaded_model() -> IrisModel:
        if slot.model is None:
            raise HTTPException(503, detail=f"no model loaded: {slot.reason}")
        return slot.model

    @app.exception_handler(RequestValidationError)
    async def validation_failed(_: Request, exc: RequestValidationError) -> JSONResponse:
        messages = [describe_error(error) for error in exc.errors()]
        detail = "; ".join(messages[:3])
        if len(messages) > 3:
            detail += f" (and {len(messages) - 3} more problems)"
        return JSONResponse({"detail": detail, "errors": messages[:MAX_LISTED_ERRORS]}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers 400 "error parsing the body" when json.loads fails other than with
        # a JSONDecodeError; to a client that is just invalid JSON, like any other.
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, RecursionError | ValueError):
            why = "nested too deeply" if isinstance(cause, RecursionError) else str(cause).split(":")[0]
            message = f"request body is not valid JSON: {why}"
            return JSONResponse({"detail": message, "errors": [message]}, status_code=422)
        return await http_exception_handler(request, exc)

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health() -> JSONResponse:
        if slot.model is None:
            body = Health(status="unavailable", model_loaded=False, reason=slot.reason, replica=replica)
            return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
        body = Health(status="ok", model_loaded=True, model_version=slot.model.metadata.get("version"), replica=replica)
        return JSONResponse(body.model_dump(exclude_none=True))

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses={413: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    )
    async def predict(request: PredictRequest) -> PredictResponse:
        model = loaded_model()
        x = np.array([[getattr(item, name) for name in FEATURES] for item in request.items], dtype=np.float64)
        probabilities = model.predict_proba(x)
        indices = probabilities.argmax(axis=1)
        predictions = [
            Prediction(
                class_index=int(index),
                species=model.classes[index],
                probabilities=dict(zip(model.classes, row.tolist(), strict=True)),
            )
            for index, row in zip(indices, probabilities, strict=True)
        ]
        for species, count in Counter(p.species for p in predictions).items():
            metrics.predictions.labels(species=species).inc(count)
        return PredictResponse(model_version=str(model.metadata.get("version", "")), predictions=predictions)

    @app.get("/model", response_model=ModelMetadata, responses={503: {"model": ErrorBody}})
    async def model_metadata() -> ModelMetadata:
        return loaded_model().metadata

    @app.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
