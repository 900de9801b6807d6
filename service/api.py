"""HTTP endpoints: predict, model status, liveness and readiness."""

from __future__ import annotations

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, render_template, request

from classifier.errors import ClassifierError, ImageError
from classifier.preprocess import decode_image
from classifier.spec import InputSpec
from service import metrics, openapi
from service.inputs import Upload, read_uploads
from service.models import ModelManager
from service.observability import note_inference

bp = Blueprint("api", __name__)


def manager() -> ModelManager:
    return current_app.extensions["model_manager"]


@bp.post("/predict")
def predict_default():
    return _predict(current_app.config["MODEL_NAME"])


@bp.post("/v1/models/<name>:predict")
def predict(name: str):
    return _predict(name)


@bp.post("/v1/models/<name>/versions/<int:version>:predict")
def predict_version(name: str, version: int):
    return _predict(name, version)


def _predict(name: str, version: int | None = None):
    model = manager().get(name, version)
    note_inference(model.name, model.version, 0)
    uploads = read_uploads(request, current_app.config["MAX_IMAGES_PER_REQUEST"])
    note_inference(model.name, model.version, len(uploads))
    model.batcher.check_room(len(uploads))  # overload costs no decoding
    images = decode_uploads(uploads, model.spec, current_app.config["MAX_IMAGE_PIXELS"])
    timeout_s = float(current_app.config["REQUEST_DEADLINE_MS"]) / 1000
    predictions = model.predict(images, timeout_s)
    results = []
    for upload, prediction in zip(uploads, predictions, strict=True):
        item = prediction.to_dict()
        if upload.filename is not None:
            item["filename"] = upload.filename
        results.append(item)
    response = jsonify(
        {"model": {"name": model.name, "version": model.version}, "predictions": results}
    )
    response.headers["X-Model-Version"] = str(model.version)
    return response


def decode_uploads(uploads: list[Upload], spec: InputSpec, max_pixels: int) -> np.ndarray:
    """Decode in the request thread, in parallel with the model; the error names the file."""
    images = np.empty((len(uploads), *spec.shape), dtype=np.uint8)
    for index, upload in enumerate(uploads):
        try:
            images[index] = decode_image(upload.data, spec, max_pixels=max_pixels)
        except ImageError as exc:
            exc.message = f"{upload.filename or f'image {index}'}: {exc.message}"
            exc.details = {"index": index, "filename": upload.filename}
            raise
    return images


@bp.get("/v1/models/<name>")
def model_status(name: str):
    return jsonify(manager().describe(name))


@bp.get("/v1/models")
def list_models():
    return jsonify(
        {
            "default": manager().default_name,
            "models": [manager().describe(name) for name in manager().names()],
        }
    )


@bp.get("/metrics")
def prometheus_metrics():
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(openapi.spec())


@bp.get("/docs")
def docs():
    return render_template("docs.html", spec=openapi.spec())


@bp.get("/")
def demo():
    mgr = manager()
    try:
        version = mgr.get(mgr.default_name).version
    except ClassifierError:
        version = None
    return render_template("index.html", model=mgr.default_name, version=version)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    mgr = manager()
    models = {name: mgr.summary(name) for name in mgr.names()}
    if mgr.ready():
        return jsonify({"status": "ready", "models": models})
    response = jsonify({"status": "not_ready", "models": models})
    response.headers["Retry-After"] = "1"
    return response, 503
