"""What the REST adapters share: this app's data plane and settings, JSON bodies read within
MAX_JSON_BYTES and MAX_JSON_DEPTH, and JSON answers naming the version that answered."""

from __future__ import annotations

import base64
import binascii
import json

from flask import Response, current_app, jsonify, request
from pydantic import BaseModel, ValidationError

from classifier.numbers import whole_number
from service.dataplane import DataPlane
from service.errors import RequestError
from service.protocols.payloads import dump
from service.protocols.tensors import ProtocolError
from service.settings import Settings


def dataplane() -> DataPlane:
    return current_app.extensions["dataplane"]


def settings() -> Settings:
    return dataplane().settings


def answer(payload: BaseModel | dict, version: int | None = None) -> Response:
    """The payload as JSON; with `version`, the X-Model-Version header of predict answers.
    A dict is sent as it is: the predict routes build their answers in the payload's shape
    without validating them again (the models describe them in /openapi.json)."""
    response = jsonify(payload if isinstance(payload, dict) else dump(payload))
    if version is not None:
        response.headers["X-Model-Version"] = str(version)
    return response


def whole_number_arg(name: str, low: int, high: int, note: str = "") -> int | None:
    """The query parameter `name` as a whole number from `low` to `high` (None when not
    given); invalid_parameter otherwise, `note` saying where the bounds come from."""
    text = request.args.get(name)
    if text is None:
        return None
    value = whole_number(text.strip())
    if value is None or not low <= value <= high:
        raise RequestError(
            f"{name} must be a whole number from {low} to {high}{note}; got {text!r}",
            code="invalid_parameter",
        )
    return value


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


def decode_base64(text: object, where: str) -> bytes:
    """Strict base64 (no stray characters); `where` names the field in the error."""
    try:
        if not isinstance(text, str):
            raise ValueError
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{where} is not valid base64", code="invalid_base64") from None
