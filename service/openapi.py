"""The OpenAPI 3.1 document, generated from the route table, the payload models and the
error table: nothing in it is written twice."""

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

PARAMETERS = {
    "name": {"type": "string", "pattern": NAME_PATTERN, "description": "model name"},
    "version": {"type": "integer", "minimum": 1, "description": "a loaded version of the model"},
}

PREDICT_BODY = {
    "required": True,
    "description": (
        f"One or more images ({', '.join(ALLOWED_FORMATS)}): multipart files in the field "
        "`image` (several files are one batch), a raw body with an image/* type, or JSON."
    ),
    "content": {
        "multipart/form-data": {"schema": {"$ref": REF.format(model="MultipartImages")}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": {"$ref": REF.format(model="InstancesRequest")}},
    },
}


def document(routes) -> dict:
    """The whole document for `routes` (service.views.ROUTES)."""
    paths: dict[str, dict] = defaultdict(dict)
    for route in routes:
        paths[route.path][route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Image classifier service",
            "version": "1",
            "description": "Classify images with versioned Keras models.",
        },
        "paths": dict(paths),
        "components": {"schemas": _components(routes)},
    }


def _operation(route) -> dict:
    operation: dict = {
        "summary": route.summary,
        "operationId": route.summary.lower().replace(" ", "_").replace(",", ""),
    }
    names = re.findall(r"{(\w+)}", route.path)
    if names:
        operation["parameters"] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {k: v for k, v in PARAMETERS[name].items() if k != "description"},
                "description": PARAMETERS[name]["description"],
            }
            for name in names
        ]
    if route.predict_body:
        operation["requestBody"] = PREDICT_BODY
    responses = {"200": _body(route.answer, route.description or route.summary)}
    if route.predict_body:
        responses["200"]["headers"] = {
            "X-Model-Version": {
                "description": "the version that answered",
                "schema": {"type": "string"},
            }
        }
    for status, (model, description) in route.others.items():
        responses[str(status)] = _body(model, description)
    responses.update(_errors(route.errors))
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _body(answer: type[BaseModel] | str, description: str) -> dict:
    if isinstance(answer, str):  # a media type, not JSON of ours
        schema = {"type": "object"} if answer == "application/json" else {"type": "string"}
        return {"description": description, "content": {answer: {"schema": schema}}}
    schema = {"$ref": REF.format(model=answer.__name__)}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(codes: tuple[str, ...]) -> dict[str, dict]:
    """One response per status, naming the codes sent with it and when."""
    by_status: dict[int, list[str]] = defaultdict(list)
    for code in codes:
        by_status[http_status(code)].append(code)
    responses = {}
    for status, listed in by_status.items():
        whens = [k.when for k in ERRORS if set(k.codes) & set(listed)]
        text = "; ".join(whens) + " (" + ", ".join(f"`{c}`" for c in listed) + ")"
        responses[str(status)] = _body(schemas.ErrorResponse, text)
    return responses


def _components(routes: tuple) -> dict:
    models: set[type[BaseModel]] = {
        schemas.ErrorResponse,
        schemas.InstancesRequest,
        schemas.MultipartImages,
    }
    for route in routes:
        if not isinstance(route.answer, str):
            models.add(route.answer)
        models.update(model for model, _ in route.others.values())
    ordered = sorted(models, key=lambda m: m.__name__)
    _, top = models_json_schema([(m, "serialization") for m in ordered], ref_template=REF)
    return dict(sorted(top["$defs"].items()))
