"""The OpenAPI 3 description of every endpoint, served at /openapi.json."""

from __future__ import annotations

from classifier.spec import ALLOWED_FORMATS


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(ref: str, description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
    "description": "model name",
}
VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
    "description": "a loaded version of the model",
}
PREDICT_BODY = {
    "required": True,
    "description": (
        f"One or more images ({', '.join(ALLOWED_FORMATS)}): multipart files in the field "
        "`image` (several files are one batch), a raw body with an image/* type, or JSON."
    ),
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "array", "items": {"type": "string", "format": "binary"}}
                },
            }
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": {"$ref": "#/components/schemas/Instances"}},
    },
}
PREDICT_RESPONSES = {
    "200": {
        **_json("PredictResponse", "one prediction per image, in input order"),
        "headers": {
            "X-Model-Version": {
                "description": "the version that answered",
                "schema": {"type": "string"},
            }
        },
    },
    "400": _error("missing, undecodable or unsupported image, or a malformed JSON body"),
    "404": _error("unknown model, or version not loaded"),
    "413": _error("body, image pixels or image count over the limit"),
    "415": _error("unsupported content type"),
    "500": _error("internal error (no details are sent)"),
    "503": _error("no model loaded yet, or the inference queue is full (see Retry-After)"),
    "504": _error("no answer within the request deadline"),
}


def _predict(summary: str, parameters: list[dict]) -> dict:
    return {
        "post": {
            "summary": summary,
            "operationId": summary.lower().replace(" ", "_").replace(",", ""),
            "parameters": parameters,
            "requestBody": PREDICT_BODY,
            "responses": PREDICT_RESPONSES,
        }
    }


def _get(summary: str, responses: dict, parameters: list[dict] | None = None) -> dict:
    operation = {
        "summary": summary,
        "operationId": summary.lower().replace(" ", "_").replace(",", ""),
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    return {"get": operation}


def _html(description: str) -> dict:
    return {
        "200": {
            "description": description,
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
    }


SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "machine-readable error code"},
                    "message": {"type": "string"},
                    "details": {"type": "object"},
                },
            }
        },
    },
    "Instances": {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["b64"],
                    "properties": {"b64": {"type": "string", "format": "byte"}},
                },
            }
        },
    },
    "Prediction": {
        "type": "object",
        "required": ["label", "probabilities"],
        "properties": {
            "label": {"type": "string"},
            "probabilities": {
                "type": "object",
                "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "filename": {"type": "string"},
        },
    },
    "PredictResponse": {
        "type": "object",
        "required": ["model", "predictions"],
        "properties": {
            "model": {
                "type": "object",
                "required": ["name", "version"],
                "properties": {"name": {"type": "string"}, "version": {"type": "integer"}},
            },
            "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}},
        },
    },
    "ModelStatus": {
        "type": "object",
        "required": ["name", "versions", "serving_version", "loaded_versions"],
        "properties": {
            "name": {"type": "string"},
            "default": {"type": "boolean"},
            "serving_version": {"type": ["integer", "null"]},
            "loaded_versions": {"type": "array", "items": {"type": "integer"}},
            "versions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["version", "state"],
                    "properties": {
                        "version": {"type": "integer"},
                        "state": {
                            "type": "string",
                            "enum": ["AVAILABLE", "LOADING", "NOT_LOADED", "FAILED", "INVALID"],
                        },
                        "error": {"type": "string"},
                        "note": {"type": "string"},
                    },
                },
            },
            "error": {"type": ["string", "null"]},
            "runtime": {"type": ["object", "null"]},
            "batching": {"type": ["object", "null"]},
            "metadata": {"type": ["object", "null"]},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["default", "models"],
        "properties": {
            "default": {"type": "string"},
            "models": {"type": "array", "items": {"$ref": "#/components/schemas/ModelStatus"}},
        },
    },
    "Status": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}, "models": {"type": "object"}},
    },
}


def spec() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Image classifier service",
            "version": "1",
            "description": "Classify images with versioned Keras models.",
        },
        "paths": {
            "/predict": _predict("Predict with the default model", []),
            "/v1/models/{name}:predict": _predict("Predict with a model", [NAME]),
            "/v1/models/{name}/versions/{version}:predict": _predict(
                "Predict with a model version", [NAME, VERSION]
            ),
            "/v1/models": _get("List models", {"200": _json("ModelList", "every served model")}),
            "/v1/models/{name}": _get(
                "Model status",
                {
                    "200": _json("ModelStatus", "versions, states and metadata"),
                    "404": _error("unknown model"),
                },
                [NAME],
            ),
            "/healthz": _get("Liveness", {"200": _json("Status", "the process is alive")}),
            "/readyz": _get(
                "Readiness",
                {
                    "200": _json("Status", "the default model is loaded and warmed up"),
                    "503": _json("Status", "not ready yet"),
                },
            ),
            "/metrics": _get(
                "Prometheus metrics",
                {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            ),
            "/openapi.json": _get(
                "API description",
                {
                    "200": {
                        "description": "this document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            ),
            "/docs": _get("API documentation page", _html("the endpoints, for people")),
            "/": _get("Demo page", _html("drop an image, see the prediction")),
        },
        "components": {"schemas": SCHEMAS},
    }
