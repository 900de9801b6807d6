"""Bounds on what a request body may cost before any model sees it: the whole body within
MAX_UPLOAD_BYTES even when it comes chunked (JSON bodies are bounded where they are read,
service/protocols/rest.py)."""

from __future__ import annotations

from flask import Flask, request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import RequestEntityTooLarge

from service.errors import RequestError


def install(app: Flask) -> None:
    @app.before_request
    def _chunked_body_within_limit() -> None:
        """Werkzeug stops reading a chunked body at the limit without a word: refuse a body
        with a byte past the limit (one of exactly the limit is taken, as with Content-Length)."""
        chunked = request.content_length is None and request.headers.get("Transfer-Encoding")
        if not chunked:
            return
        try:
            body = request.get_data(cache=True)
            over = len(body) >= app.config["MAX_CONTENT_LENGTH"] and _more(request.environ)
        except (ParseException, NoMoreData) as exc:  # gunicorn's, on broken chunk framing
            raise RequestError(f"the chunked body is malformed: {exc}") from None
        if over:
            raise RequestEntityTooLarge()


def _more(environ: dict) -> bool:
    """Whether the body goes on past what Werkzeug read: one byte from the server's stream."""
    return bool(environ["wsgi.input"].read(1))
