"""CORS for the origins in CORS_ORIGINS: browsers on those origins may call the API.

No credentials are ever allowed (keys travel in headers, not cookies), so `*` is safe to
offer; any other origin is echoed only when it is on the list.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, Response, request

ALLOWED_HEADERS = (
    "Authorization, Content-Type, X-API-Key, X-Request-ID, Inference-Header-Content-Length"
)
EXPOSED_HEADERS = "X-Model-Version, X-Request-ID, Retry-After, Inference-Header-Content-Length"
MAX_AGE_SECONDS = "600"


def headers(origins: tuple[str, ...], environ: Mapping[str, object]) -> list[tuple[str, str]]:
    """The CORS headers of an answer to this request (beside `Vary: Origin`, which every
    answer carries while CORS is on); none for an origin not on the list."""
    origin = str(environ.get("HTTP_ORIGIN", "")).rstrip("/")
    if not origin or not ("*" in origins or origin in origins):
        return []
    found = [("Access-Control-Allow-Origin", "*" if "*" in origins else origin)]
    method = str(environ.get("REQUEST_METHOD", "")).upper()
    if method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ:
        found += [
            ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            ("Access-Control-Allow-Headers", ALLOWED_HEADERS),
            ("Access-Control-Max-Age", MAX_AGE_SECONDS),
        ]
    else:
        found.append(("Access-Control-Expose-Headers", EXPOSED_HEADERS))
    return found


def install(app: Flask, origins: tuple[str, ...]) -> None:
    if not origins:
        return

    @app.after_request
    def _cors(response: Response) -> Response:
        # On every answer, not only allowed origins': a shared cache must not hand an answer
        # stored for a request without the header (or another origin's) to an allowed one.
        response.vary.add("Origin")
        for name, value in headers(origins, request.environ):
            response.headers[name] = value
        return response
