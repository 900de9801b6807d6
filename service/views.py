"""The HTTP views, and the route table that registers them and generates /openapi.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request
from pydantic import BaseModel

from classifier.errors import ClassifierError, ImageError
from classifier.preprocess import decode_image
from classifier.spec import InputSpec
from service import metrics, openapi, schemas
from service.errors import STATUS
from service.inputs import Upload, read_uploads
from service.observability import note_images, note_model
from service.registry import ModelState, Registry
from service.settings import Settings


def settings() -> Settings:
    return current_app.extensions["settings"]


def registry() -> Registry:
    return current_app.extensions["registry"]


# -- predict ---------------------------------------------------------------------------------


def predict_default():
    return _predict(settings().model_name)


def predict(name: str):
    return _predict(name)


def predict_version(name: str, version: int):
    return _predict(name, version)


def _predict(name: str, version: int | None = None):
    model = registry().get(name, version)
    note_model(model.name, model.version)  # refusals below are labelled with it too
    uploads = read_uploads(request, settings().max_images_per_request)
    note_images(len(uploads))
    model.batcher.check_room(len(uploads))  # overload costs no decoding
    images = decode_uploads(uploads, model.spec, settings().max_image_pixels)
    predictions = model.predict(images, settings().request_deadline_ms / 1000)
    answer = schemas.PredictResponse(
        model=schemas.ModelRef(name=model.name, version=model.version),
        predictions=[
            schemas.Prediction(label=p.label, probabilities=p.probabilities)
            if upload.filename is None
            else schemas.Prediction(
                label=p.label, probabilities=p.probabilities, filename=upload.filename
            )
            for upload, p in zip(uploads, predictions, strict=True)
        ],
    )
    response = jsonify(schemas.dump(answer))
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


# -- model status ----------------------------------------------------------------------------


def model_status(name: str):
    return jsonify(schemas.dump(describe(registry().find(name))))


def list_models():
    answer = schemas.ModelList(
        default=registry().default_name,
        models=[describe(state) for state in registry().states()],
    )
    return jsonify(schemas.dump(answer))


def summary(state: ModelState) -> schemas.ModelSummary:
    """What readiness reports: cheap, no scan, no metadata."""
    loaded = state.loaded
    return schemas.ModelSummary(
        serving_version=max(loaded) if loaded else None,
        loaded_versions=sorted(loaded),
        error=state.error,
    )


def describe(state: ModelState) -> schemas.ModelStatus:
    """Versions with their state, and the serving version's runtime, batching and metadata."""
    loaded = dict(state.loaded)  # one snapshot for the whole answer
    served = loaded[max(loaded)] if loaded else None
    scanned = {s.version for s in state.scanned}
    versions = []
    for version in sorted(scanned | set(loaded)):
        kind, error = ("AVAILABLE", None) if version in loaded else state.version_state(version)
        entry = schemas.VersionInfo(version=version, state=kind)
        if error is not None:
            entry.error = error
        if version in loaded and version not in scanned:
            entry.note = "removed from the store; served from memory"
        versions.append(entry)
    runtime = served.predictor.runtime if served else None
    return schemas.ModelStatus(
        name=state.name,
        default=state.name == registry().default_name,
        serving_version=max(loaded) if loaded else None,
        loaded_versions=sorted(loaded),
        error=state.error,
        versions=versions,
        runtime=schemas.RuntimeInfo(name=runtime.name, device=runtime.device) if runtime else None,
        batching=_batching(served.batcher) if served else None,
        metadata=served.predictor.metadata.raw if served else None,
    )


def _batching(batcher) -> schemas.BatchingInfo:
    return schemas.BatchingInfo(
        max_batch_size=batcher.max_batch_size,
        padded_sizes=batcher.sizes,
        timeout_ms=batcher.timeout_s * 1000,
        queue_capacity=batcher.capacity,
        queued=batcher.queued(),
        **batcher.stats.to_dict(),
    )


# -- health, metrics, documents, pages ------------------------------------------------------


def healthz():
    return jsonify(schemas.dump(schemas.Health(status="ok")))


def readyz():
    reg = registry()
    ready = reg.ready()
    answer = schemas.Readiness(
        status="ready" if ready else "not_ready",
        models={state.name: summary(state) for state in reg.states()},
    )
    response = jsonify(schemas.dump(answer))
    if ready:
        return response
    response.headers["Retry-After"] = "1"
    return response, 503


def prometheus_metrics():
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


@cache
def spec() -> dict:
    """The OpenAPI document, built once per worker from the route table."""
    return openapi.document(ROUTES)


def openapi_json():
    return jsonify(spec())


def docs():
    return render_template("docs.html", spec=spec())


def demo():
    reg = registry()
    try:
        version = reg.get(reg.default_name).version
    except ClassifierError:
        version = None
    return render_template("index.html", model=reg.default_name, version=version)


# -- the route table -------------------------------------------------------------------------

# A predict request can meet every error but those of routing.
PREDICT_ERRORS = tuple(code for code in STATUS if code not in ("not_found", "method_not_allowed"))


@dataclass(frozen=True)
class Route:
    """One operation: its view, and what the OpenAPI document says of it."""

    method: str
    path: str  # OpenAPI form: /v1/models/{name}
    view: Any
    summary: str
    answer: type[BaseModel] | str  # the 200 body: a payload model, or a media type
    description: str = ""
    predict_body: bool = False
    errors: tuple[str, ...] = ()  # error codes it can answer with (service/errors.py)
    others: dict[int, tuple[type[BaseModel], str]] = field(default_factory=dict)

    @property
    def rule(self) -> str:
        """The Flask rule: {version} is an integer, other parameters strings."""
        return self.path.replace("{version}", "<int:version>").replace("{", "<").replace("}", ">")


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/predict",
        predict_default,
        "Predict with the default model",
        schemas.PredictResponse,
        predict_body=True,
        errors=PREDICT_ERRORS,
    ),
    Route(
        "POST",
        "/v1/models/{name}:predict",
        predict,
        "Predict with a model",
        schemas.PredictResponse,
        predict_body=True,
        errors=PREDICT_ERRORS,
    ),
    Route(
        "POST",
        "/v1/models/{name}/versions/{version}:predict",
        predict_version,
        "Predict with a model version",
        schemas.PredictResponse,
        predict_body=True,
        errors=PREDICT_ERRORS,
    ),
    Route("GET", "/v1/models", list_models, "List models", schemas.ModelList),
    Route(
        "GET",
        "/v1/models/{name}",
        model_status,
        "Model status",
        schemas.ModelStatus,
        description="versions, states and metadata",
        errors=("model_not_found",),
    ),
    Route("GET", "/healthz", healthz, "Liveness", schemas.Health, "the process is alive"),
    Route(
        "GET",
        "/readyz",
        readyz,
        "Readiness",
        schemas.Readiness,
        "the default model is loaded and warmed up",
        others={503: (schemas.Readiness, "not ready yet")},
    ),
    Route(
        "GET",
        "/metrics",
        prometheus_metrics,
        "Prometheus metrics",
        "text/plain",
        "Prometheus text exposition format",
    ),
    Route("GET", "/openapi.json", openapi_json, "API description", "application/json"),
    Route("GET", "/docs", docs, "API documentation page", "text/html", "the endpoints, for people"),
    Route("GET", "/", demo, "Demo page", "text/html", "drop an image, see the prediction"),
)


def register(app: Flask) -> None:
    bp = Blueprint("api", __name__)
    for route in ROUTES:
        bp.add_url_rule(route.rule, route.view.__name__, route.view, methods=[route.method])
    app.register_blueprint(bp)
