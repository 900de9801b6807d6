"""The OpenAPI 3.1 document, generated from the route table (service/http/routes.py), the
payload models (service/protocols/*_schemas.py) and the error table (service/errors.py):
nothing is written twice."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from classifier.spec import ALLOWED_FORMATS, DEFAULT_SPEC
from classifier.store import NAME_PATTERN
from service.capture import IMAGE_NAME
from service.errors import ERRORS, http_status
from service.http import docs_page
from service.protocols import tfserving, v2
from service.protocols.loop import DEFAULT_LIMIT, LIMIT
from service.protocols.own_schemas import (
    FeedbackRequest,
    FeedbackUpload,
    InstancesRequest,
    MultipartImages,
)
from service.protocols.payloads import EXAMPLE_MODEL, EXAMPLE_PROBABILITIES, dump
from service.protocols.tfserving_schemas import (
    TfClassifyRequest,
    TfModelMetadata,
    TfPredictRequest,
    TfPredictResponse,
)
from service.protocols.v2_schemas import V2InferRequest, V2ModelMetadata, V2ServerMetadata
from service.settings import Settings

REF = "#/components/schemas/{model}"
BINARY = {"type": "string", "format": "binary"}

PARAMETERS = {
    "top_k": (
        {"type": "integer", "minimum": 1, "examples": [2]},
        "also list the k most probable classes, best first (1 to the model's class count), "
        "in this service's own answer: not with TensorFlow Serving's JSON request on "
        "/v1/models routes (400 `invalid_parameter`; its answer has no such field)",
    ),
    "name": (
        {"type": "string", "pattern": NAME_PATTERN, "examples": [EXAMPLE_MODEL]},
        "model name",
    ),
    "version": (
        {"type": "integer", "minimum": 1, "examples": [3]},
        "a loaded version of the model",
    ),
    "label": ({"type": "string", "examples": ["stable"]}, "a version label (VERSION_LABELS)"),
    "model": (
        {"type": "string", "examples": [EXAMPLE_MODEL]},
        "the model whose captured images to label (default: MODEL_NAME)",
    ),
    "limit": (
        {"type": "integer", "minimum": LIMIT[0], "maximum": LIMIT[1], "examples": [DEFAULT_LIMIT]},
        f"how many to list at most (default {DEFAULT_LIMIT}, at most {LIMIT[1]})",
    ),
    "image": (
        {
            "type": "string",
            "pattern": IMAGE_NAME.pattern,
            "examples": [f"{'0' * 64}.jpg"],
        },
        "a captured image's file name, `<sha256>.<ext>` (from the captures list)",
    ),
    "filename": (
        {"type": "string", "examples": list(docs_page.PAGE_ASSETS)},
        "a file of Swagger UI's release (`.js` or `.css`)",
    ),
}
OPENAPI = "3.1.0"
INFO = {
    "title": "Image classifier service",
    "version": "1",
    "description": (
        "Classify images with versioned Keras models: this service's own API, the "
        "Open Inference Protocol (V2) and TensorFlow Serving's REST API."
    ),
}


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


BODIES: dict[str, dict] = {
    "predict": {
        "required": True,
        "description": (
            f"One or more images ({', '.join(ALLOWED_FORMATS)}): multipart files in the field "
            "`image` (several files are one batch), a raw body with an image/* or "
            "application/octet-stream type, or JSON. On /v1/models routes JSON is TensorFlow "
            "Serving's request and gets its answer, whatever its Content-Type (as TensorFlow "
            "Serving, which reads every body as JSON: curl's `-d` sends a form type); on "
            "/predict it gets this service's own."
        ),
        "content": {
            "multipart/form-data": {"schema": _ref(MultipartImages)},
            "image/*": {"schema": BINARY},
            "application/octet-stream": {"schema": BINARY},
            "application/json": {
                "schema": {"anyOf": [_ref(InstancesRequest), _ref(TfPredictRequest)]}
            },
        },
    },
    "feedback": {
        "required": True,
        "description": (
            "JSON naming a captured request (its X-Request-ID) and the right class, or "
            "multipart with the photo in the file field `image` and the class in the field "
            "`label`."
        ),
        "content": {
            "application/json": {"schema": _ref(FeedbackRequest)},
            "multipart/form-data": {"schema": _ref(FeedbackUpload)},
        },
    },
    "tf_classify": {
        "required": True,
        "content": {"application/json": {"schema": _ref(TfClassifyRequest)}},
    },
    "v2_infer": {
        "required": True,
        "description": (
            "JSON, or with the binary tensor data extension the JSON header "
            "(Inference-Header-Content-Length bytes) followed by the tensors' bytes."
        ),
        "content": {
            "application/json": {"schema": _ref(V2InferRequest)},
            "application/octet-stream": {"schema": BINARY},
        },
    },
}
BODY_MODELS = (
    FeedbackRequest,
    FeedbackUpload,
    InstancesRequest,
    TfPredictRequest,
    MultipartImages,
    TfClassifyRequest,
    V2InferRequest,
)


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def document(routes, keyed: Callable[[str], bool] | None = None) -> dict:
    """The whole document for `routes` (service.http.routes.ROUTES); `keyed(path)` says which
    paths need an API key (none when API keys are off)."""
    paths: dict[str, dict] = defaultdict(dict)
    for route in routes:
        operation = _operation(route)
        if keyed is not None and keyed(route.path):
            operation["security"] = [{"bearer": []}, {"apiKey": []}]
            operation["responses"]["401"] = _body(
                route.error_shapes, "no API key, or an unknown one (`unauthorized`)"
            )
            operation["responses"] = dict(sorted(operation["responses"].items()))
        paths[route.path][route.method.lower()] = operation
    components: dict = {"schemas": _components(routes)}
    if keyed is not None:
        components["securitySchemes"] = SECURITY_SCHEMES
    return {"openapi": OPENAPI, "info": INFO, "paths": dict(paths), "components": components}


def _operation(route) -> dict:
    operation: dict = {
        "summary": route.summary,
        "operationId": re.sub(r"\W+", "_", route.summary.lower()).strip("_"),
        "tags": list(route.tags),
    }
    names = [(name, "path") for name in re.findall(r"{(\w+)}", route.path)]
    names += [(name, "query") for name in route.query]
    if names:
        operation["parameters"] = [
            {
                "name": name,
                "in": where,
                "required": where == "path",
                "schema": PARAMETERS[name][0],
                "description": PARAMETERS[name][1],
            }
            for name, where in names
        ]
    if route.body:
        operation["requestBody"] = _with_examples(
            BODIES[route.body], _named(_request_models(route))
        )
    answer = _body(route.answer, route.description or route.summary)
    success = str(route.status)
    responses = {success: _with_examples(answer, _answer_examples(route.answer))}
    if route.body == "v2_infer":  # binary outputs come as the header and the tensors' bytes
        responses["200"]["content"]["application/octet-stream"] = {"schema": BINARY}
    if route.inference:
        responses["200"]["headers"] = {
            "X-Model-Version": {
                "description": "the version that answered",
                "schema": {"type": "string"},
            }
        }
    responses.update(_errors(route.errors, route.error_shapes))
    if route.not_ready:
        responses["503"] = _body(route.not_ready, "not ready yet")
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _body(answer, description: str) -> dict:
    if isinstance(answer, str):  # a media type, not JSON of ours
        schema = {"type": "object"} if answer == "application/json" else {"type": "string"}
        return {"description": description, "content": {answer: {"schema": schema}}}
    media = [a for a in answer if isinstance(a, str)] if isinstance(answer, tuple) else []
    content = {kind: {"schema": {"type": "string"}} for kind in media}
    models = _models(answer)
    schema = _ref(models[0]) if len(models) == 1 else {"anyOf": [_ref(m) for m in models]}
    return {
        "description": description,
        "content": {**content, "application/json": {"schema": schema}},
    }


def _errors(codes: tuple[str, ...], shapes: tuple[type[BaseModel], ...]) -> dict[str, dict]:
    """One response per status, naming the codes sent with it and when."""
    by_status: dict[int, list[str]] = defaultdict(list)
    for code in codes:
        by_status[http_status(code)].append(code)
    responses = {}
    for status, listed in by_status.items():
        whens = [k.when for k in ERRORS if set(k.codes) & set(listed)]
        text = "; ".join(whens) + " (" + ", ".join(f"`{c}`" for c in listed) + ")"
        responses[str(status)] = _body(shapes, text)
    return responses


def _components(routes) -> dict:
    models: set[type[BaseModel]] = set(BODY_MODELS)
    for route in routes:
        for answer in (route.answer, route.error_shapes, route.not_ready or ()):
            models.update(_models(answer))
    ordered = sorted(models, key=lambda m: m.__name__)
    modes = [(m, "validation" if m in BODY_MODELS else "serialization") for m in ordered]
    _, top = models_json_schema(modes, ref_template=REF)
    for model, values in DERIVED_EXAMPLES.items():
        top["$defs"][model.__name__]["examples"] = values
    return dict(sorted(top["$defs"].items()))


# -- examples: an example per JSON request body and JSON 200 answer, from the models' own ---


def _models(answer) -> tuple[type[BaseModel], ...]:
    """The payload models of an answer: one, several, or none for a media type."""
    if isinstance(answer, str):
        return ()
    return (
        tuple(a for a in answer if not isinstance(a, str))
        if isinstance(answer, tuple)
        else (answer,)
    )


def _request_models(route) -> tuple[type[BaseModel], ...]:
    """The models whose examples fit the route's JSON body."""
    if route.body != "predict":
        ref = BODIES[route.body]["content"]["application/json"]["schema"]["$ref"]
        name = ref.rsplit("/", 1)[1]
        return tuple(m for m in BODY_MODELS if m.__name__ == name)
    # JSON on /v1/models/...:predict is TensorFlow Serving's request; on /predict, our own.
    if TfPredictResponse in _models(route.answer):
        return (TfPredictRequest,)
    return (InstancesRequest,)


def examples_of(model: type[BaseModel]) -> list:
    """A model's example bodies: declared on it (its protocol's schemas module), or derived here."""
    if model in DERIVED_EXAMPLES:
        return DERIVED_EXAMPLES[model]
    return (model.model_config.get("json_schema_extra") or {}).get("examples", [])


def _with_examples(body: dict, examples: dict[str, dict]) -> dict:
    """`body` (a request body or a response) with `examples` on its JSON media type."""
    content = body["content"]
    if "application/json" not in content:
        return body
    json = {**content["application/json"], "examples": examples}
    return {**body, "content": {**content, "application/json": json}}


def _named(models: tuple[type[BaseModel], ...]) -> dict[str, dict]:
    """The models' examples, named after their model (and numbered where it has several)."""
    named = {}
    for model in models:
        values = examples_of(model)
        for i, value in enumerate(values, 1):
            name = model.__name__ if len(values) == 1 else f"{model.__name__} {i}"
            named[name] = {"value": value}
    return named


def _answer_examples(answer) -> dict[str, dict]:
    if answer == "application/json":  # only /openapi.json answers a bare JSON object
        outline = {"openapi": OPENAPI, "info": INFO, "paths": {}, "components": {"schemas": {}}}
        return {"this document": {"summary": "its outline", "value": outline}}
    return _named(_models(answer))


def _v2_model_metadata() -> dict:
    classes = tuple(EXAMPLE_PROBABILITIES)
    max_images = Settings.model_fields["max_images_per_request"].default
    model = v2.describe_model(EXAMPLE_MODEL, [3], "onnx", DEFAULT_SPEC.shape, classes, max_images)
    return dump(model)


def _tf_model_metadata() -> dict:
    classes = len(EXAMPLE_PROBABILITIES)
    return dump(tfserving.describe_signature(EXAMPLE_MODEL, 3, classes))


# Examples naming constants of modules that import the schemas modules, so that they cannot be
# declared there: the V2 server's name and extensions, the platforms, the TF signature.
DERIVED_EXAMPLES: dict[type[BaseModel], list] = {
    V2ServerMetadata: [dump(v2.server_description())],
    V2ModelMetadata: [_v2_model_metadata()],
    TfModelMetadata: [_tf_model_metadata()],
}
