"""The OpenAPI 3.1 document, generated from the route table (service/routes.py), the payload
models (service/schemas.py) and the error table (service/errors.py): nothing is written twice."""

from __future__ import annotations

import re
from collections import defaultdict

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from classifier.spec import ALLOWED_FORMATS
from classifier.store import NAME_PATTERN
from service import schemas
from service.errors import ERRORS, http_status

REF = "#/components/schemas/{model}"
BINARY = {"type": "string", "format": "binary"}

PARAMETERS = {
    "name": ({"type": "string", "pattern": NAME_PATTERN}, "model name"),
    "version": ({"type": "integer", "minimum": 1}, "a loaded version of the model"),
    "label": ({"type": "string"}, "a version label (VERSION_LABELS)"),
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
            "Serving's request and gets its answer; on /predict it gets this service's own."
        ),
        "content": {
            "multipart/form-data": {"schema": _ref(schemas.MultipartImages)},
            "image/*": {"schema": BINARY},
            "application/octet-stream": {"schema": BINARY},
            "application/json": {
                "schema": {
                    "anyOf": [_ref(schemas.InstancesRequest), _ref(schemas.TfPredictRequest)]
                }
            },
        },
    },
    "tf_classify": {
        "required": True,
        "content": {"application/json": {"schema": _ref(schemas.TfClassifyRequest)}},
    },
    "v2_infer": {
        "required": True,
        "description": (
            "JSON, or with the binary tensor data extension the JSON header "
            "(Inference-Header-Content-Length bytes) followed by the tensors' bytes."
        ),
        "content": {
            "application/json": {"schema": _ref(schemas.V2InferRequest)},
            "application/octet-stream": {"schema": BINARY},
        },
    },
}
BODY_MODELS = (
    schemas.InstancesRequest,
    schemas.TfPredictRequest,
    schemas.MultipartImages,
    schemas.TfClassifyRequest,
    schemas.V2InferRequest,
)


def document(routes) -> dict:
    """The whole document for `routes` (service.routes.ROUTES)."""
    paths: dict[str, dict] = defaultdict(dict)
    for route in routes:
        paths[route.path][route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Image classifier service",
            "version": "1",
            "description": (
                "Classify images with versioned Keras models: this service's own API, the "
                "Open Inference Protocol (V2) and TensorFlow Serving's REST API."
            ),
        },
        "paths": dict(paths),
        "components": {"schemas": _components(routes)},
    }


def _operation(route) -> dict:
    operation: dict = {
        "summary": route.summary,
        "operationId": re.sub(r"\W+", "_", route.summary.lower()).strip("_"),
        "tags": list(route.tags),
    }
    names = re.findall(r"{(\w+)}", route.path)
    if names:
        operation["parameters"] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": PARAMETERS[name][0],
                "description": PARAMETERS[name][1],
            }
            for name in names
        ]
    if route.body:
        operation["requestBody"] = BODIES[route.body]
    responses = {"200": _body(route.answer, route.description or route.summary)}
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
    models = answer if isinstance(answer, tuple) else (answer,)
    schema = _ref(models[0]) if len(models) == 1 else {"anyOf": [_ref(m) for m in models]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


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
        for answer in (route.answer, route.error_shapes, route.not_ready):
            if isinstance(answer, tuple):
                models.update(answer)
            elif answer is not None and not isinstance(answer, str):
                models.add(answer)
    ordered = sorted(models, key=lambda m: m.__name__)
    modes = [(m, "validation" if m in BODY_MODELS else "serialization") for m in ordered]
    _, top = models_json_schema(modes, ref_template=REF)
    return dict(sorted(top["$defs"].items()))
