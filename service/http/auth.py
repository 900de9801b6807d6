"""API keys on the HTTP edge: every path but the exempt ones (and CORS preflights) needs a
known key in `Authorization: Bearer <key>` or `X-API-Key` (checked by service/keys.py)."""

from __future__ import annotations

from flask import Flask, request

from service import calls, keys


def presented_keys() -> list[str]:
    """The keys a request carries: `Authorization: Bearer`, `X-API-Key`, or both."""
    found = []
    key = keys.bearer(request.headers.get("Authorization", ""))
    if key:
        found.append(key)
    if request.headers.get("X-API-Key"):
        found.append(request.headers["X-API-Key"])
    return found


def install(app: Flask, keys_file: str, exempt_paths: tuple[str, ...]) -> None:
    """Require a known key on every path but the exempt ones (and CORS preflights)."""
    if not keys_file:
        return
    key_file = keys.KeyFile(keys_file)

    @app.before_request
    def _require_key() -> None:
        if keys.exempt(request.path, exempt_paths) or _preflight():
            return
        calls.note_api_key(keys.check(key_file, presented_keys()))


def _preflight() -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
