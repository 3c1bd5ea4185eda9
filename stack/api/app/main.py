"""The FastAPI application: /health, /predict, /model, /metrics (plus /docs).

Run with `uvicorn --factory app.main:create_app_or_exit`. The model file comes
from IRIS_MODEL_PATH (default: where the image's build trains it) and is loaded
and checked when the app is made: a missing or bad model file stops the process
at startup with exit code 1 and a one-line reason, so no request ever meets a
half-usable model.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter
from pathlib import Path

import fastapi_offline
import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.metrics import Metrics
from app.middleware import BodyLimitMiddleware, MetricsMiddleware, ReplicaHeaderMiddleware
from app.model import FEATURES, ModelError, load_model
from app.schemas import ErrorBody, Health, ModelMetadata, Prediction, PredictRequest, PredictResponse, describe_error

DEFAULT_MODEL_PATH = "/opt/iris/model.json"
MAX_BODY_BYTES = 1 << 20
MAX_LISTED_ERRORS = 20
# Swagger UI's and ReDoc's files, shipped by the fastapi-offline package: /docs works air-gapped.
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"

JSON_MEDIA_TYPE = "application/json"
# The answer of /predict in a header too, for the edge's log: a shadow comparator (app.shadow)
# compares it with a challenger's without reading any body. Small batches only: a proxy's
# buffer for response headers is a few KiB.
PREDICTIONS_HEADER = "X-Iris-Predictions"
MAX_HEADER_PREDICTIONS = 16

# uvicorn configures this logger, so messages land in the container log in its format.
log = logging.getLogger("uvicorn.error")


def create_app_or_exit() -> FastAPI:
    """uvicorn's factory: the app, or exit code 1 with one line on stderr saying what is wrong."""
    try:
        return create_app()
    except ModelError as err:
        raise SystemExit(f"iris-api: cannot start: {err}") from None


def create_app(model_path: str | os.PathLike | None = None, replica: str | None = None) -> FastAPI:
    """The app serving the model file at `model_path`; raises ModelError when it is not usable."""
    path = Path(model_path or os.environ.get("IRIS_MODEL_PATH") or DEFAULT_MODEL_PATH)
    replica = replica or socket.gethostname()
    model = load_model(path)
    metrics = Metrics()
    metrics.set_model(model)
    log.info("loaded model %s %s from %s", model.metadata["model"], model.metadata["version"], path)

    app = FastAPI(
        title="Iris API",
        version="1.0.0",
        description="Classifies Iris flowers from sepal and petal measurements (cm).",
        # Replaced below by pages that load their scripts from this app, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    # add_middleware puts each new one outermost: the replica header goes on every
    # answer, and metrics see the 413s of the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)
    app.add_middleware(ReplicaHeaderMiddleware, replica=replica)

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

    # Checked at load (app.model.Metadata), so building this answer cannot fail.
    health_body = Health(status="ok", model_loaded=True, model_version=model.metadata["version"], replica=replica)

    @app.get("/health", response_model=Health)
    async def health() -> JSONResponse:
        return JSONResponse(health_body.model_dump(exclude_none=True))

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses={413: {"model": ErrorBody}, 415: {"model": ErrorBody}, 422: {"model": ErrorBody}},
        dependencies=[Depends(require_json)],
    )
    async def predict(request: PredictRequest, response: Response) -> PredictResponse:
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
        metrics.monitoring.observe(x, probabilities, indices)
        if len(predictions) <= MAX_HEADER_PREDICTIONS:
            response.headers[PREDICTIONS_HEADER] = predictions_header(predictions)
        return PredictResponse(model_version=model.metadata["version"], predictions=predictions)

    @app.get("/model", response_model=ModelMetadata)
    async def model_metadata() -> ModelMetadata:
        return model.metadata

    # Relative URLs: the same page works at /docs and behind the web UI's proxy at /api/docs
    # (where /docs-assets/... would be the UI's own path, and /openapi.json not the API's).
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url="docs-assets/swagger-ui-bundle.js",
            swagger_css_url="docs-assets/swagger-ui.css",
            swagger_favicon_url="docs-assets/favicon.png",
            oauth2_redirect_url=None,
            # No "valid" badge fetched from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url="docs-assets/redoc.standalone.js",
            redoc_favicon_url="docs-assets/favicon.png",
            with_google_fonts=False,
        )

    @app.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # Every route's series exist from the start, now that all routes are known.
    metrics.start_series(MetricsMiddleware.route_methods(app.router.routes))
    return app


def predictions_header(predictions: list[Prediction]) -> str:
    """`setosa=0.9712/versicolor=0.0281/virginica=0.0007;…`: each prediction's probabilities by species,
    the predicted species first."""
    parts = []
    for p in predictions:
        ordered = sorted(p.probabilities.items(), key=lambda kv: kv[0] != p.species)
        parts.append("/".join(f"{name}={value:.4f}" for name, value in ordered))
    return ";".join(parts)


async def require_json(request: Request) -> None:
    """415 unless the body is declared JSON: FastAPI would not parse it, and the 422 it then gives
    ("must be a JSON object") blames a body that may well be one."""
    declared = request.headers.get("content-type")
    media = (declared or "").split(";")[0].strip().lower()
    if media == JSON_MEDIA_TYPE or (media.startswith("application/") and media.endswith("+json")):
        return
    got = f"got Content-Type: {_short_header(declared)}" if declared else "the request has no Content-Type header"
    raise StarletteHTTPException(415, f"request body must be sent as Content-Type: {JSON_MEDIA_TYPE} ({got})")


def _short_header(value: str) -> str:
    return value if len(value) <= 60 else value[:57] + "..."
