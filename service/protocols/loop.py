"""This service's own REST API for the feedback loop: feedback on an answer, the captured images
waiting for a label, and the drift of a model's answers (service/feedback.py, capture.py and
drift.py do the work)."""

from __future__ import annotations

import datetime as _dt

from flask import Response, current_app, request
from pydantic import ValidationError

from service.dataplane import Upload
from service.drift import DriftReport, reference_of
from service.errors import RequestError
from service.feedback import Feedback, NotCaptured, Stored
from service.photos import MEDIA_TYPES
from service.protocols import own_schemas as schemas
from service.protocols.rest import answer, dataplane, read_json

FIELD, LABEL = "image", "label"
SHAPES = (
    'JSON {"request_id": "<the X-Request-ID of a captured request>", "label": "<class>"} '
    f"or multipart/form-data with the photo in the file field {FIELD!r} and the class in the "
    f"field {LABEL!r}"
)
LIMIT = (1, 200)  # captured images listed at once


def loop() -> Feedback:
    return current_app.extensions["feedback"]


def feedback(name: str):
    """201 with the stored feedback."""
    if request.mimetype == "application/json":
        body = _feedback_json()
        stored = loop().on_capture(name, body.request_id, body.index, body.label)
    elif request.mimetype == "multipart/form-data":
        files = request.files.getlist(FIELD)
        labels = request.form.getlist(LABEL)
        if len(files) != 1 or len(labels) != 1:
            raise _invalid(
                f"send one file in {FIELD!r} and one {LABEL!r} (got {len(files)} files and "
                f"{len(labels)} labels)"
            )
        upload = Upload(files[0].read(), files[0].filename or None)
        stored = loop().on_upload(name, upload, labels[0])
    else:
        raise RequestError(
            f"unsupported Content-Type {request.mimetype or '(none)'!r}; send {SHAPES}",
            code="unsupported_media_type",
        )
    response = answer(_stored(stored))
    response.status_code = 201
    return response


def _feedback_json() -> schemas.FeedbackRequest:
    try:
        data = read_json(request.get_data(cache=False), "the JSON body")
    except RequestError as exc:
        if exc.code == "invalid_json":
            raise _invalid(exc.message) from None
        raise
    try:
        return schemas.FeedbackRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the body"
        raise _invalid(f"{where}: {first['msg']}") from None


def _invalid(why: str) -> RequestError:
    return RequestError(f"{why}; send {SHAPES}", code="invalid_feedback")


def _stored(stored: Stored) -> schemas.FeedbackResponse:
    predicted = stored.predicted
    return schemas.FeedbackResponse(
        model=stored.model,
        label=stored.label,
        image=stored.image,
        sha256=stored.sha256,
        request_id=stored.request_id,
        predicted=None
        if predicted is None
        else schemas.Answered(label=predicted.label, version=predicted.version),
        correct=stored.correct,
    )


def captures(name: str):
    """The captured images of `name` not labelled yet, newest first."""
    limit = _limit()
    model, found = loop().unlabelled(name, limit)
    body = schemas.CaptureList(
        model=model.name,
        classes=list(model.predictor.class_names),
        capture_rate=dataplane().settings.capture_rate,
        captures=[
            schemas.CapturedImage(
                request_id=c.request_id,
                index=c.index,
                captured_at=_dt.datetime.fromtimestamp(c.captured_at, _dt.timezone.utc).isoformat(
                    timespec="milliseconds"
                ),
                version=c.version,
                label=c.label,
                probabilities=c.probabilities,
                image=c.image,
            )
            for c in found
        ],
    )
    return answer(body)


def _limit() -> int:
    text = request.args.get("limit")
    if text is None:
        return 50
    low, high = LIMIT
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise RequestError(
            f"limit must be a whole number from {low} to {high}; got {text!r}",
            code="invalid_parameter",
        )
    return int(text)


def captured_image(name: str, image: str):
    data = loop().captured_image(name, image)
    if data is None:
        raise NotCaptured(f"no captured image {image!r} of model {name!r}")
    response = Response(data, content_type=MEDIA_TYPES[image.rsplit(".", 1)[1]])
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def drift(name: str):
    """The serving version's drift, over this worker's window of its answers."""
    plane = dataplane()
    model = plane.model(name)
    report = plane.monitor.windows.report(model, reference_of(plane.registry, model))
    return answer(drift_response(report))


def drift_response(report: DriftReport) -> schemas.DriftResponse:
    ref = report.reference
    names = report.class_names
    return schemas.DriftResponse(
        model=report.model,
        version=report.version,
        window=report.window,
        answers=report.answers,
        threshold=report.threshold,
        drifting=report.drifting,
        class_mix=schemas.DriftClassMix(
            psi=_round(report.psi_class_mix),
            window=dict(zip(names, map(_share, report.class_mix), strict=True)),
            reference=dict(ref.class_mix) if ref else None,
        ),
        confidence=schemas.DriftConfidence(
            psi=_round(report.psi_confidence),
            edges=report.edges,
            window=[_share(f) for f in report.confidence],
            reference=list(ref.confidence.fractions) if ref else None,
        ),
        reference=schemas.DriftReferenceInfo(
            of=ref.of, count=ref.count, recorded_by=ref.recorded_by
        )
        if ref
        else None,
        note=report.note,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _share(value: float) -> float:
    return round(value, 6)
