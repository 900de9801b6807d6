"""Bounds on what a request body may cost before any model sees it: the whole body within
MAX_UPLOAD_BYTES even when it comes chunked (JSON bodies are bounded where they are read,
service/protocols/rest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flask import Flask, request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import RequestEntityTooLarge

from service.errors import RequestError


def install(app: Flask) -> None:
    app.wsgi_app = _bounded_by_content_length(app.wsgi_app)

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


def _bounded_by_content_length(wsgi_app: Callable) -> Callable:
    """A body with a Content-Length is read through Werkzeug's bound, which raises
    ClientDisconnected (400 `bad_request`) where it ends early: gunicorn marks its stream
    `wsgi.input_terminated`, so Werkzeug read it as it was, and an upload its client gave up
    half-way was decoded as a whole (logged and counted as a broken image)."""

    def bounded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("CONTENT_LENGTH"):  # a chunked body keeps the mark: it has no length
            environ.pop("wsgi.input_terminated", None)
        return wsgi_app(environ, start_response)

    return bounded


def _more(environ: dict) -> bool:
    """Whether the body goes on past what Werkzeug read: one byte from the server's stream."""
    return bool(environ["wsgi.input"].read(1))
