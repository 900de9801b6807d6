"""The HTTP edge's error answers: any exception becomes the JSON error body of the request's
protocol, with the status of the error table (service/errors.py)."""

from __future__ import annotations

import logging

from flask import Flask, Response, has_request_context, jsonify
from werkzeug.exceptions import HTTPException

from classifier.errors import ClassifierError
from service import calls
from service.errors import STATUS, http_status
from service.http.routes import error_style, unmatched_message
from service.protocols.payloads import ErrorBody, ErrorResponse, SimpleError, dump

log = logging.getLogger(__name__)

# Werkzeug's own HTTP errors (routing, body limits) and the code each is sent with.
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(
    code: str, message: str, details: dict | None = None, status: int | None = None
) -> tuple[Response, int]:
    """The JSON error body; `status` only for Werkzeug's errors, which bring their own."""
    status = status or http_status(code)
    calls.note_error(code)  # for the access log line and the failure metric
    # V2 and TensorFlow Serving: {"error": "message"}
    if has_request_context() and error_style() == "simple":
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
        allow = dict(exc.get_headers()).get("Allow")
        message = unmatched_message(status, allow) or exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"the request body is over the limit of {limit} bytes (or form limits)"
        response, status = error_response(code, message, status=status)
        if allow:
            response.headers["Allow"] = allow
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response("internal_error", "internal server error")
