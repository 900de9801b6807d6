"""This service's own REST API: predict, model status, health (the pages and /metrics are the
HTTP edge's, service/http/pages.py)."""

from __future__ import annotations

from flask import request

from classifier.predictor import top_classes
from service.dataplane import Upload
from service.protocols import own_schemas as schemas
from service.protocols import status
from service.protocols.rest import answer, dataplane, whole_number_arg
from service.protocols.uploads import read_uploads
from service.registry import ServedModel


def predict_default():
    return predict(dataplane().settings.model_name)


def predict(name: str, version: int | None = None):
    """Multipart, raw image or JSON instances in; this service's own answer out
    (schemas.PredictResponse, built as a dict: nothing in it needs validating)."""
    plane = dataplane()
    model = plane.model(name, version)
    top_k = _top_k(len(model.predictor.class_names))
    uploads = read_uploads(request)
    return answer(predict_body(model, uploads, plane.predict(model, uploads), top_k), model.version)


def predict_body(model: ServedModel, uploads: list[Upload], probs, top_k: int | None) -> dict:
    """schemas.PredictResponse, as a dict (the predict fast path sends it too)."""
    predictions = model.predictor.to_predictions(probs)
    return {
        "model": {"name": model.name, "version": model.version},
        "predictions": [
            _prediction(p, upload.filename, top_k)
            for upload, p in zip(uploads, predictions, strict=True)
        ],
    }


def _top_k(classes: int) -> int | None:
    """The `top_k` query parameter: a whole number from 1 to the model's class count."""
    return whole_number_arg("top_k", 1, classes, " (this model's classes)")


def _prediction(p, filename: str | None, top_k: int | None) -> dict:
    """One schemas.Prediction: fields not given stay out of the answer."""
    fields: dict = {"label": p.label, "probabilities": p.probabilities}
    if filename is not None:
        fields["filename"] = filename
    if top_k is not None:
        best = top_classes(p.probabilities, top_k)
        fields["top"] = [{"label": c, "probability": v} for c, v in best]
    return fields


def model_status(name: str):
    plane = dataplane()
    return answer(status.describe(plane.state(name), plane.registry.default_name))


def list_models():
    reg = dataplane().registry
    body = schemas.ModelList(
        default=reg.default_name,
        models=[status.describe(state, reg.default_name) for state in reg.states()],
    )
    return answer(body)


def healthz():
    return answer(schemas.Health(status="ok"))


def readyz():
    plane = dataplane()
    body = schemas.Readiness(
        status="ready" if plane.ready() else "not_ready",
        models={state.name: status.summary(state) for state in plane.registry.states()},
    )
    response = answer(body)
    if body.status == "ready":
        return response
    response.headers["Retry-After"] = "1"
    return response, 503
