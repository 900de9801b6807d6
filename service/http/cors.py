"""CORS for the origins in CORS_ORIGINS: browsers on those origins may call the API.

No credentials are ever allowed (keys travel in headers, not cookies), so `*` is safe to
offer; any other origin is echoed only when it is on the list.
"""

from __future__ import annotations

from flask import Flask, Response, request

ALLOWED_HEADERS = (
    "Authorization, Content-Type, X-API-Key, X-Request-ID, Inference-Header-Content-Length"
)
EXPOSED_HEADERS = "X-Model-Version, X-Request-ID, Retry-After, Inference-Header-Content-Length"
MAX_AGE_SECONDS = "600"


def install(app: Flask, origins: tuple[str, ...]) -> None:
    if not origins:
        return

    @app.after_request
    def _cors(response: Response) -> Response:
        # On every answer, not only allowed origins': a shared cache must not hand an answer
        # stored for a request without the header (or another origin's) to an allowed one.
        response.vary.add("Origin")
        origin = request.headers.get("Origin", "").rstrip("/")
        if not origin or not ("*" in origins or origin in origins):
            return response
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = MAX_AGE_SECONDS
        else:
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
