"""The route table: every HTTP operation of every protocol, its view, and what /openapi.json
says of it. Flask's rules, the inference metrics and the OpenAPI document are all derived here."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from flask import Flask, has_request_context, jsonify, request
from pydantic import BaseModel
from werkzeug.routing import BaseConverter

from service import keys
from service.errors import STATUS
from service.http import docs_page, openapi, pages
from service.protocols import loop, own, tfserving, v2_rest, v2_schemas
from service.protocols import own_schemas as schemas
from service.protocols import tfserving_schemas as tf_schemas
from service.protocols.payloads import ErrorResponse, SimpleError
from service.protocols.rest import settings
from service.protocols.uploads import is_upload
from service.settings import Settings

# Feedback's own errors (service/feedback.py); a predict request never meets them.
FEEDBACK_ONLY = (
    "unknown_label", "invalid_feedback", "not_captured", "feedback_off", "feedback_not_stored",
)  # fmt: skip
# A predict request can meet every error but those of routing (and of keys: documented only
# where keys are on, see service/http/openapi.py).
NOT_PREDICT = ("not_found", "method_not_allowed", "unauthorized", *FEEDBACK_ONLY)
PREDICT_ERRORS = tuple(code for code in STATUS if code not in NOT_PREDICT)
OWN_PREDICT_ERRORS = tuple(code for code in PREDICT_ERRORS if code != "invalid_request")
LOOKUP_ERRORS = ("model_not_found", "version_not_found", "model_not_ready")
IMAGE_ERRORS = (
    "empty_file", "not_an_image", "unsupported_format", "empty_image", "truncated_image",
    "corrupt_image", "image_too_large",
)  # fmt: skip
FEEDBACK_ERRORS = (
    *FEEDBACK_ONLY, *IMAGE_ERRORS, "model_not_found", "model_not_ready", "payload_too_large",
    "unsupported_media_type", "bad_request", "invalid_json",
)  # fmt: skip

# The 200 body: a payload model, several (any of them), a media type, or media types and
# models together (content negotiation: GET / gives HTML or JSON).
Answer = type[BaseModel] | str | tuple[type[BaseModel] | str, ...]


@dataclass(frozen=True)
class Route:
    """One operation: its view, and what the OpenAPI document says of it."""

    method: str
    path: str  # OpenAPI form: /v1/models/{name}
    view: Callable
    summary: str
    answer: Answer  # the 200 body: payload model(s), or a media type
    description: str = ""
    body: str | None = None  # a request body kind of service.http.openapi.BODIES
    errors: tuple[str, ...] = ()  # error codes it can answer with (service/errors.py)
    error_shapes: tuple[type[BaseModel], ...] = (ErrorResponse,)
    not_ready: type[BaseModel] | None = None  # a 503 body other than an error
    query: tuple[str, ...] = ()  # query parameters (service.http.openapi.PARAMETERS)
    inference: bool = False  # counted in the inference metrics
    tags: tuple[str, ...] = ()
    status: int = 200  # of a success

    @property
    def rule(self) -> str:
        """The Flask rule: {version} is an integer, other parameters strings."""
        return self.path.replace("{version}", "<int:version>").replace("{", "<").replace("}", ">")

    @property
    def endpoint(self) -> str:
        """A unique name for Flask (which refuses dots in it)."""
        return f"{self.method} {self.path}".replace(".", "_")


OWN, V2, TF = ("this service",), ("Open Inference Protocol (V2)",), ("TensorFlow Serving",)
KSERVE_V1 = ("KServe V1",)  # KServe's V1 protocol: TensorFlow Serving's predict, plus these
SIMPLE = (SimpleError,)
EITHER = (ErrorResponse, SimpleError)


def _predict(path: str, summary: str, view: Callable, answer: Answer, shapes, also=()) -> Route:
    own = shapes == (ErrorResponse,)
    return Route(
        "POST", path, view, summary, answer, body="predict",
        errors=OWN_PREDICT_ERRORS if own else PREDICT_ERRORS, error_shapes=shapes,
        inference=True, tags=(OWN if own else OWN + TF) + also, query=("top_k",),
    )  # fmt: skip


def _tf(method: str, path: str, view: Callable, summary: str, answer: Answer, **kw) -> Route:
    return Route(method, path, view, summary, answer, error_shapes=SIMPLE, tags=TF, **kw)


def _v2(method: str, path: str, view: Callable, summary: str, answer: Answer, **kw) -> Route:
    return Route(method, path, view, summary, answer, error_shapes=SIMPLE, tags=V2, **kw)


BOTH = (schemas.PredictResponse, tf_schemas.TfPredictResponse)

ROUTES: tuple[Route, ...] = (
    _predict("/predict", "Predict with the default model", own.predict_default, schemas.PredictResponse, (ErrorResponse,)),
    _predict("/v1/models/{name}:predict", "Predict with a model", tfserving.predict, BOTH, EITHER, also=KSERVE_V1),
    _predict("/v1/models/{name}/versions/{version}:predict", "Predict with a model version", tfserving.predict, BOTH, EITHER),
    _predict("/v1/models/{name}/labels/{label}:predict", "Predict with a labelled version", tfserving.predict, BOTH, EITHER),
    _tf("POST", "/v1/models/{name}:classify", tfserving.classify, "Classify (TensorFlow Serving)", tf_schemas.TfClassifyResponse, body="tf_classify", errors=PREDICT_ERRORS, inference=True),
    _tf("POST", "/v1/models/{name}/versions/{version}:classify", tfserving.classify, "Classify with a version (TensorFlow Serving)", tf_schemas.TfClassifyResponse, body="tf_classify", errors=PREDICT_ERRORS, inference=True),
    _tf("POST", "/v1/models/{name}/labels/{label}:classify", tfserving.classify, "Classify with a labelled version (TensorFlow Serving)", tf_schemas.TfClassifyResponse, body="tf_classify", errors=PREDICT_ERRORS, inference=True),
    Route("GET", "/v1/models", own.list_models, "List models", schemas.ModelList, tags=OWN),
    Route("GET", "/v1/models/{name}", own.model_status, "Model status", schemas.ModelStatus, "versions, states, metadata, TensorFlow Serving's model_version_status and KServe V1's ready", errors=("model_not_found",), tags=OWN + TF + KSERVE_V1),
    _tf("GET", "/v1/models/{name}/versions/{version}", tfserving.version_status, "Version status (TensorFlow Serving)", tf_schemas.TfModelStatus, errors=("model_not_found", "version_not_found")),
    _tf("GET", "/v1/models/{name}/labels/{label}", tfserving.version_status, "Labelled version status (TensorFlow Serving)", tf_schemas.TfModelStatus, errors=("model_not_found", "version_not_found")),
    _tf("GET", "/v1/models/{name}/metadata", tfserving.metadata, "Model metadata (TensorFlow Serving)", tf_schemas.TfModelMetadata, errors=LOOKUP_ERRORS),
    _tf("GET", "/v1/models/{name}/versions/{version}/metadata", tfserving.metadata, "Version metadata (TensorFlow Serving)", tf_schemas.TfModelMetadata, errors=LOOKUP_ERRORS),
    _v2("GET", "/v2", v2_rest.server_metadata, "Server metadata (V2)", v2_schemas.V2ServerMetadata),
    _v2("GET", "/v2/health/live", v2_rest.live, "Server live (V2)", v2_schemas.V2Live),
    _v2("GET", "/v2/health/ready", v2_rest.ready, "Server ready (V2)", v2_schemas.V2Ready, errors=("model_not_ready",)),
    _v2("GET", "/v2/models/{name}", v2_rest.model_metadata, "Model metadata (V2)", v2_schemas.V2ModelMetadata, errors=LOOKUP_ERRORS),
    _v2("GET", "/v2/models/{name}/versions/{version}", v2_rest.model_metadata, "Version metadata (V2)", v2_schemas.V2ModelMetadata, errors=LOOKUP_ERRORS),
    _v2("GET", "/v2/models/{name}/ready", v2_rest.model_ready, "Model ready (V2)", v2_schemas.V2ModelReady, errors=LOOKUP_ERRORS),
    _v2("GET", "/v2/models/{name}/versions/{version}/ready", v2_rest.model_ready, "Version ready (V2)", v2_schemas.V2ModelReady, errors=LOOKUP_ERRORS),
    _v2("POST", "/v2/models/{name}/infer", v2_rest.infer, "Infer (V2)", v2_schemas.V2InferResponse, body="v2_infer", errors=PREDICT_ERRORS, inference=True),
    _v2("POST", "/v2/models/{name}/versions/{version}/infer", v2_rest.infer, "Infer with a version (V2)", v2_schemas.V2InferResponse, body="v2_infer", errors=PREDICT_ERRORS, inference=True),
    Route("POST", "/v1/models/{name}/feedback", loop.feedback, "Feedback on an answer", schemas.FeedbackResponse, "the right class of a captured request's image (JSON with its request id) or of a photo sent with it (multipart), stored as training data in FEEDBACK_DIR/<model>/<class>/", body="feedback", errors=FEEDBACK_ERRORS, status=201, tags=OWN),
    Route("GET", "/v1/models/{name}/captures", loop.captures, "Captured images to label", schemas.CaptureList, "the images kept by CAPTURE_RATE and not labelled yet, newest first, with the model's answer", errors=("model_not_found", "model_not_ready", "invalid_parameter"), query=("limit",), tags=OWN),
    Route("GET", "/v1/models/{name}/captures/{image}", loop.captured_image, "A captured image", "image/*", "the file as it was sent (a tensor of pixels as PNG)", errors=("model_not_found", "not_captured"), tags=OWN),
    Route("GET", "/v1/models/{name}/drift", loop.drift, "Drift of a model's answers", schemas.DriftResponse, "the population stability index of the class mix and of the top-class probability of the last DRIFT_WINDOW answers (this worker's) against the serving version's answers on its validation photos", errors=("model_not_found", "model_not_ready"), tags=OWN),
    Route("GET", "/healthz", own.healthz, "Liveness", schemas.Health, "the process is alive", tags=OWN),
    Route("GET", "/readyz", own.readyz, "Readiness", schemas.Readiness, "the default model is loaded and warmed up", not_ready=schemas.Readiness, tags=OWN),
    Route("GET", "/metrics", pages.prometheus_metrics, "Prometheus metrics", "text/plain", "Prometheus text exposition format", tags=OWN),
    Route("GET", "/openapi.json", lambda: jsonify(spec(settings())), "API description", "application/json", tags=OWN),
    Route("GET", "/docs", lambda: docs_page.page(spec(settings())), "API documentation page", "text/html", "Swagger UI over /openapi.json, for people", tags=OWN),
    Route("GET", "/docs/assets/{filename}", docs_page.asset, "API documentation page asset", "text/*", "Swagger UI's JavaScript (`text/javascript`) or CSS (`text/css`), shipped by the flask-swagger-ui package", errors=("not_found",), tags=OWN),
    Route("GET", "/", pages.root, "Demo page, or liveness", ("text/html", schemas.Alive), "for browsers (Accept: text/html), the demo page: drop an image, see the prediction; for other clients, KServe V1's liveness", tags=OWN + KSERVE_V1),
    Route("GET", "/label", pages.label, "Labelling page", "text/html", "the captured images not labelled yet, newest first, with the model's answer; one click or key per class sends the feedback", query=("model",), tags=OWN),
)  # fmt: skip

INFERENCE_RULES = frozenset(route.rule for route in ROUTES if route.inference)


def spec(settings: Settings | None = None) -> dict:
    """The OpenAPI document for these settings (default: the defaults, API keys off)."""
    settings = settings or Settings.with_overrides({"api_keys_file": ""})
    return _spec(bool(settings.api_keys_file), settings.exempt_paths)


@cache
def _spec(keys_on: bool, exempt_paths: tuple[str, ...]) -> dict:
    """Built once per worker from the route table."""
    keyed = (lambda path: not keys.exempt(path, exempt_paths)) if keys_on else None
    return openapi.document(ROUTES, keyed)


BY_RULE = {route.rule: route for route in ROUTES}

# TensorFlow Serving's verbs served here (POST /v1/models/<name>...:<verb>).
TF_VERBS = tuple(sorted({route.path.rpartition(":")[2] for route in ROUTES if ":" in route.path}))
# A path of TensorFlow Serving's shape: /v1/models/<name>[/versions/<n>|/labels/<l>], then
# /metadata or :<verb>. Unmatched, it is answered in TensorFlow Serving's error shape.
TF_PATH = re.compile(
    r"/v1/models/[^/:]+(?P<version>/(?:versions|labels)/[^/:]*)?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[^/]*))?"
)


class Segment(BaseConverter):
    """Every string path parameter (Flask's default converter, replaced): one segment
    without ':'. A model name or label never holds one (NAME_PATTERN), and the ':' of
    TensorFlow Serving's verbs ends the name: GET /v1/models/<name>:predict is not the
    model status of 'pets:predict', and /v1/models/<name>:regress matches no route."""

    regex = "[^/:]+"
    part_isolating = True


def _tf_path() -> re.Match | None:
    """The TensorFlow Serving path this request was sent to, if it is one; the model's own
    /v1/models/<name> is not (it is this service's status too)."""
    match = TF_PATH.fullmatch(request.path)
    if match and (match["version"] or match["metadata"] or match["verb"] is not None):
        return match
    return None


def unmatched_message(status: int, allow: str | None) -> str | None:
    """A clear message for a request no route took (404, 405) on a TensorFlow Serving path:
    the unknown verb named, or the methods allowed; None elsewhere (Werkzeug's own then)."""
    unmatched = has_request_context() and request.url_rule is None and status in (404, 405)
    match = _tf_path() if unmatched else None
    if match is None:
        return None
    where = f"{request.method} {request.path}"
    served = " and ".join(f":{verb}" for verb in TF_VERBS)
    if match["verb"] is not None and match["verb"] not in TF_VERBS:
        return f"unknown verb {match['verb']!r} in {where}; this server serves POST {served}"
    if status == 405:
        return f"{request.method} is not allowed on {request.path} (allowed: {allow})"
    return (
        f"no such path: {where}; TensorFlow Serving's are /v1/models/<name>"
        "[/versions/<version>|/labels/<label>] with GET (status), GET /metadata or "
        f"POST {served}, a version being a whole number"
    )


def error_style() -> str:
    """How this request's errors are shaped: "simple" ({"error": "message"}) where its
    protocol wants it. Decided from the matched route (or the path), so it holds for errors
    raised before the view runs too (API keys and limits refuse earlier); asked only when
    an error is answered (service/http/errors.py), not on every request."""
    rule = request.url_rule.rule if request.url_rule else None
    route = BY_RULE.get(rule)
    if route is None:  # unmatched: by the protocol the path belongs to
        v2 = request.path == "/v2" or request.path.startswith("/v2/")
        return "simple" if v2 or _tf_path() else "own"
    if route.error_shapes == SIMPLE:
        return "simple"
    if route.error_shapes == EITHER and not is_upload(request.mimetype):
        return "simple"  # TensorFlow Serving's JSON request on a shared route
    return "own"


def register(app: Flask) -> None:
    """The rules on the app itself: under a blueprint, Flask looks up its hooks and error
    handlers by the blueprint's name too, on every request."""
    app.url_map.converters["default"] = Segment  # before the rules are added
    for route in ROUTES:
        app.add_url_rule(route.rule, route.endpoint, route.view, methods=[route.method])
