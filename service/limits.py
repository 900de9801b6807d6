"""Bounds on what a request body may cost before any model sees it: the whole body within
MAX_UPLOAD_BYTES even when it comes chunked, and JSON within its own size and depth."""

from __future__ import annotations

import json

from flask import Flask, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from service.current import settings
from service.errors import RequestError
from service.tensors import ProtocolError


def install(app: Flask) -> None:
    @app.before_request
    def _chunked_body_within_limit() -> None:
        """Werkzeug stops reading a chunked body at the limit without a word: refuse it."""
        chunked = request.content_length is None and request.headers.get("Transfer-Encoding")
        if chunked and len(request.get_data(cache=True)) >= app.config["MAX_CONTENT_LENGTH"]:
            raise RequestEntityTooLarge()


def read_json(data: bytes, what: str) -> object:
    """Parse a JSON body within MAX_JSON_BYTES and MAX_JSON_DEPTH; `what` names it in errors."""
    cfg = settings()
    if len(data) > cfg.json_limit:
        raise RequestError(
            f"{what} is {len(data)} bytes; JSON is limited to {cfg.json_limit} bytes",
            code="payload_too_large",
        )
    try:
        value = json.loads(data)
    except RecursionError:
        value = None
        depth_exceeded = True
    except ValueError:
        raise RequestError(f"{what} is not valid JSON", code="invalid_json") from None
    else:
        depth_exceeded = depth(value, cfg.max_json_depth) > cfg.max_json_depth
    if depth_exceeded:
        raise RequestError(
            f"{what} is nested deeper than {cfg.max_json_depth} levels", code="invalid_json"
        )
    return value


def depth(value: object, stop_after: int) -> int:
    """How deep arrays and objects nest (iteratively; stops looking past `stop_after`)."""
    deepest, level = 0, [(value, 1)]
    while level:
        item, d = level.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, d)
            if deepest > stop_after:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            level.extend((child, d + 1) for child in children if isinstance(child, dict | list))
    return deepest


def parse(payload: type[BaseModel], data: bytes, what: str, whole: str) -> BaseModel:
    """A protocol's JSON body as its payload model, within the JSON bounds; the first
    field that does not fit is named, `whole` where the body itself is off."""
    try:
        return payload.model_validate(read_json(data, what))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or whole
        raise ProtocolError(f"{where}: {first['msg']}") from None
