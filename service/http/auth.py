"""API keys on the HTTP edge: every path but the exempt ones (and CORS preflights) needs a
known key in `Authorization: Bearer <key>` or `X-API-Key` (checked by service/keys.py)."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, request

from service import calls, keys

# app.extensions[KEY_CHECK]: the KeyCheck, where keys are on (the predict fast path asks it too)
KEY_CHECK = "key_check"


def presented_keys(environ: Mapping[str, object]) -> list[str]:
    """The keys a request carries: `Authorization: Bearer`, `X-API-Key`, or both (read from
    the WSGI environ, as Werkzeug's request.headers reads them)."""
    found = []
    key = keys.bearer(str(environ.get("HTTP_AUTHORIZATION", "")))
    if key:
        found.append(key)
    if environ.get("HTTP_X_API_KEY"):
        found.append(str(environ["HTTP_X_API_KEY"]))
    return found


class KeyCheck:
    """The key a request needs, on the paths that need one."""

    def __init__(self, keys_file: str, exempt_paths: tuple[str, ...]) -> None:
        self.key_file = keys.KeyFile(keys_file)
        self.exempt_paths = exempt_paths

    def __call__(self, path: str, environ: Mapping[str, object]) -> None:
        """Note the key's name on the call; Unauthorized without a known key."""
        if not keys.exempt(path, self.exempt_paths):
            calls.note_api_key(keys.check(self.key_file, presented_keys(environ)))


def install(app: Flask, keys_file: str, exempt_paths: tuple[str, ...]) -> None:
    """Require a known key on every path but the exempt ones (and CORS preflights)."""
    if not keys_file:
        return
    check = app.extensions[KEY_CHECK] = KeyCheck(keys_file, exempt_paths)

    @app.before_request
    def _require_key() -> None:
        if not _preflight():
            check(request.path, request.environ)


def _preflight() -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
