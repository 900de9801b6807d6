"""API errors and the one place that turns every error into a JSON body."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, has_app_context, jsonify
from werkzeug.exceptions import HTTPException

from classifier.errors import ClassifierError

log = logging.getLogger(__name__)


class ApiError(ClassifierError):
    """An error raised by the HTTP layer, with its status and code."""

    status = 400
    code = "bad_request"


class NotReady(ApiError):
    status = 503
    code = "model_not_ready"


def error_response(
    status: int, code: str, message: str, details: dict | None = None
) -> tuple[Response, int]:
    body: dict = {"code": code, "message": message}
    if has_app_context():
        g.error_code = code  # for the access log line and the failure metric
    if details:
        body["details"] = details
    response = jsonify({"error": body})
    if status == 503:
        response.headers["Retry-After"] = "1"
    return response, status


def _http_code(exc: HTTPException) -> str:
    return {
        413: "payload_too_large",
        404: "not_found",
        405: "method_not_allowed",
        415: "unsupported_media_type",
    }.get(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"))


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ClassifierError)
    def _classifier_error(exc: ClassifierError):
        if exc.status >= 500:
            log.error("%s: %s", exc.code, exc.message)
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"the request body is over the limit of {limit} bytes (or form limits)"
        response, status = error_response(status, _http_code(exc), message)
        allow = dict(exc.get_headers()).get("Allow")
        if allow:
            response.headers["Allow"] = allow
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
