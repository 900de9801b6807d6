"""Every error code the API sends, with its HTTP status, in one table; and the handlers that
turn any exception into the JSON error body.

Core errors (classifier.errors, service.batching, service.registry) carry only a code; this
table at the HTTP edge gives each its status. The README's error table, and the error
responses of the OpenAPI document, are generated from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, Response, g, has_app_context, jsonify
from werkzeug.exceptions import HTTPException

from classifier.errors import ClassifierError
from service.schemas import ErrorBody, ErrorResponse, SimpleError, dump

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorKind:
    status: int
    codes: tuple[str, ...]
    when: str


ERRORS: tuple[ErrorKind, ...] = (
    ErrorKind(
        400, ("missing_image",), "no image in the request (the message names the field `image`)"
    ),
    ErrorKind(
        400,
        (
            "empty_file",
            "not_an_image",
            "unsupported_format",
            "empty_image",
            "truncated_image",
            "corrupt_image",
        ),
        "the bytes are not an image this service accepts (with `details.index` and "
        "`details.filename` when one of several is bad)",
    ),
    ErrorKind(
        400,
        ("invalid_json", "invalid_base64"),
        "a JSON body that is not JSON, nests deeper than `MAX_JSON_DEPTH`, or is not shaped "
        '`{"instances": [{"b64": ...}]}`',
    ),
    ErrorKind(
        400,
        ("invalid_request",),
        "a V2 or TensorFlow Serving request that does not fit the protocol or the model "
        "(input or output name, datatype, shape, binary sizes, signature, top k)",
    ),
    ErrorKind(
        400,
        ("invalid_parameter",),
        "a query parameter out of its range (`top_k`: 1 to the model's class count)",
    ),
    ErrorKind(
        400, ("bad_request",), "a request the HTTP layer cannot parse (a malformed form, say)"
    ),
    ErrorKind(
        401,
        ("unauthorized",),
        "API keys are on and the request has none, or an unknown one (with `WWW-Authenticate`)",
    ),
    ErrorKind(
        404,
        ("model_not_found", "version_not_found", "not_found"),
        "unknown model, version not loaded, or unknown path",
    ),
    ErrorKind(
        405, ("method_not_allowed",), "wrong method (the `Allow` header lists the right ones)"
    ),
    ErrorKind(
        413,
        ("payload_too_large",),
        "body over `MAX_UPLOAD_BYTES` (or a JSON body over `MAX_JSON_BYTES`), or too many "
        "form parts",
    ),
    ErrorKind(
        413, ("image_too_large",), "more pixels than `MAX_IMAGE_PIXELS` (decompression bombs)"
    ),
    ErrorKind(
        413, ("too_many_images",), "more images than `MAX_IMAGES_PER_REQUEST` in one request"
    ),
    ErrorKind(
        415,
        ("unsupported_media_type",),
        "a content type other than multipart, `image/*`, `application/octet-stream` or JSON",
    ),
    ErrorKind(
        429,
        ("rate_limited",),
        "over the per-client limit of the nginx in front (`deploy/nginx.conf`), with `Retry-After`",
    ),
    ErrorKind(503, ("model_not_ready",), "no loadable model version (with `Retry-After`)"),
    ErrorKind(
        503, ("queue_full",), "the inference queue is full: back off and retry (`Retry-After`)"
    ),
    ErrorKind(504, ("deadline_exceeded",), "no answer within `REQUEST_DEADLINE_MS`"),
    ErrorKind(
        500,
        ("internal_error", "inference_failed"),
        "a bug, or a model call that failed; logged on the server, no details sent",
    ),
)

STATUS: dict[str, int] = {code: kind.status for kind in ERRORS for code in kind.codes}

# Werkzeug's own HTTP errors (routing, body limits) and the code each is sent with.
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def http_status(code: str) -> int:
    """The status a code is sent with; a code missing from the table is a bug (500)."""
    return STATUS.get(code, 500)


class RequestError(ClassifierError):
    """The request itself is malformed (raised at the HTTP edge, while reading it)."""

    code = "bad_request"


def error_response(
    code: str, message: str, details: dict | None = None, status: int | None = None
) -> tuple[Response, int]:
    """The JSON error body; `status` only for Werkzeug's errors, which bring their own."""
    status = status or http_status(code)
    simple = False
    if has_app_context():
        g.error_code = code  # for the access log line and the failure metric
        simple = g.get("error_style") == "simple"
    if simple:  # V2 and TensorFlow Serving: {"error": "message"}
        response = jsonify(dump(SimpleError(error=message)))
    else:
        body = ErrorBody(code=code, message=message)
        if details:
            body.details = details
        response = jsonify(dump(ErrorResponse(error=body)))
    if status == 503:
        response.headers["Retry-After"] = "1"
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="image-classifier"'
    return response, status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ClassifierError)
    def _classifier_error(exc: ClassifierError):
        if exc.code not in STATUS:
            log.error("unmapped error %s: %s", exc.code, exc.message)
            return error_response("internal_error", "internal server error")
        if http_status(exc.code) >= 500:
            log.error("%s: %s", exc.code, exc.message)
        return error_response(exc.code, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        code = HTTP_CODES.get(status) or (exc.name or "error").lower().replace(" ", "_")
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"the request body is over the limit of {limit} bytes (or form limits)"
        response, status = error_response(code, message, status=status)
        allow = dict(exc.get_headers()).get("Allow")
        if allow:
            response.headers["Allow"] = allow
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response("internal_error", "internal server error")
