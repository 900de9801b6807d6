"""The views of this service's own API: predict, model status, health, metrics, pages."""

from __future__ import annotations

from flask import Response, jsonify, render_template, request

from classifier.errors import ClassifierError
from service import inference, metrics, schemas, status
from service.current import registry, settings
from service.errors import RequestError
from service.inputs import read_uploads
from service.observability import note_model


def predict_default():
    return predict(settings().model_name)


def predict(name: str, version: int | None = None):
    """Multipart, raw image or JSON instances in; this service's own answer out."""
    model = registry().get(name, version)
    note_model(model.name, model.version)  # refusals below are labelled with it too
    top_k = _top_k(len(model.predictor.class_names))
    uploads = read_uploads(request, settings().max_images_per_request)
    predictions = model.predictor.to_predictions(inference.probabilities(model, uploads))
    answer = schemas.PredictResponse(
        model=schemas.ModelRef(name=model.name, version=model.version),
        predictions=[
            _prediction(p, upload.filename, top_k)
            for upload, p in zip(uploads, predictions, strict=True)
        ],
    )
    response = jsonify(schemas.dump(answer))
    response.headers["X-Model-Version"] = str(model.version)
    return response


def _top_k(classes: int) -> int | None:
    """The `top_k` query parameter: a whole number from 1 to the model's class count."""
    text = request.args.get("top_k")
    if text is None:
        return None
    if not text.strip().isdigit() or not 1 <= int(text) <= classes:
        raise RequestError(
            f"top_k must be a whole number from 1 to {classes} (this model's classes); "
            f"got {text!r}",
            code="invalid_parameter",
        )
    return int(text)


def _prediction(p, filename: str | None, top_k: int | None) -> schemas.Prediction:
    """Built in one go (each assignment to a payload would validate it again): fields not
    given stay out of the answer."""
    fields: dict = {"label": p.label, "probabilities": p.probabilities}
    if filename is not None:
        fields["filename"] = filename
    if top_k is not None:
        best = sorted(p.probabilities.items(), key=lambda item: -item[1])[:top_k]
        fields["top"] = [schemas.ClassScore(label=c, probability=v) for c, v in best]
    return schemas.Prediction(**fields)


def model_status(name: str):
    reg = registry()
    return jsonify(schemas.dump(status.describe(reg.find(name), reg.default_name)))


def list_models():
    reg = registry()
    answer = schemas.ModelList(
        default=reg.default_name,
        models=[status.describe(state, reg.default_name) for state in reg.states()],
    )
    return jsonify(schemas.dump(answer))


def healthz():
    return jsonify(schemas.dump(schemas.Health(status="ok")))


def readyz():
    reg = registry()
    ready = reg.ready()
    answer = schemas.Readiness(
        status="ready" if ready else "not_ready",
        models={state.name: status.summary(state) for state in reg.states()},
    )
    response = jsonify(schemas.dump(answer))
    if ready:
        return response
    response.headers["Retry-After"] = "1"
    return response, 503


def prometheus_metrics():
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


def demo():
    """The demo page, told what the default model is: its classes and version, or why it is
    not loaded yet (the page then says so, and stays usable)."""
    reg = registry()
    name = reg.default_name
    try:
        model = reg.get(name)
    except ClassifierError as exc:
        model, not_ready = None, exc.message
    else:
        not_ready = None
    return render_template(
        "index.html",
        model=name,
        version=model.version if model else None,
        class_names=list(model.predictor.class_names) if model else [],
        not_ready=not_ready,
        max_images=settings().max_images_per_request,
        max_upload_bytes=settings().max_upload_bytes,
    )
