"""A replica of the course's Iris API: the yardstick bench/run measures stack/api against.

Written the way the course writes it: a pickled scikit-learn RandomForestClassifier(200) loaded
at import, pydantic request models, a plain (sync) FastAPI endpoint, and
prometheus-fastapi-instrumentator's default instrumentation. Request and response have the
shape of stack/api's /predict (`{"items": [...]}` in, `{"predictions": [{class_index, species,
probabilities}]}` out), so one wrk script and one accuracy check serve both.
"""

import joblib
import numpy as np
from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator
from pydantic import BaseModel

bundle = joblib.load("/app/model.joblib")
model = bundle["model"]
CLASSES = bundle["classes"]


class IrisFeatures(BaseModel):
    sepal_length: float
    sepal_width: float
    petal_length: float
    petal_width: float


class PredictRequest(BaseModel):
    items: list[IrisFeatures]


app = FastAPI(title="Iris API (course replica)")
Instrumentator().instrument(app).expose(app)


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/predict")
def predict(request: PredictRequest):
    x = np.array([[i.sepal_length, i.sepal_width, i.petal_length, i.petal_width] for i in request.items])
    probabilities = model.predict_proba(x)
    return {
        "predictions": [
            {
                "class_index": int(k),
                "species": CLASSES[k],
                "probabilities": dict(zip(CLASSES, row.tolist())),
            }
            for k, row in zip(probabilities.argmax(axis=1), probabilities)
        ]
    }
