"""Read the images of this service's own predict request: multipart files, a raw image body,
or JSON base64."""

from __future__ import annotations

from flask import Request
from pydantic import ValidationError

from service.dataplane import Upload
from service.errors import RequestError
from service.protocols.own_schemas import InstancesRequest
from service.protocols.rest import decode_base64, read_json

FIELD = "image"
JSON_SHAPE = '{"instances": [{"b64": "<base64 image>"}, ...]}'


def read_uploads(request: Request) -> list[Upload]:
    """The images in the request, in order (their count is checked by the data plane);
    raises RequestError otherwise."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        uploads = _from_multipart(request)
    elif mimetype.startswith("image/") or mimetype == "application/octet-stream":
        uploads = [Upload(request.get_data(cache=False))]
    elif mimetype == "application/json":
        uploads = _from_json(request)
    elif mimetype == "application/x-www-form-urlencoded":
        raise _missing("a url-encoded form cannot carry a file; use multipart/form-data")
    elif not mimetype and not request.content_length and not request.get_data(cache=False):
        raise _missing("the request has no body")
    else:
        raise RequestError(
            f"unsupported Content-Type {mimetype or '(none)'!r}; send multipart/form-data with "
            f"the file field {FIELD!r}, an image/* or application/octet-stream body, or "
            "application/json with "
            '{"instances": [{"b64": "..."}]}',
            code="unsupported_media_type",
        )
    if not uploads:
        raise _missing("the request holds no image")
    return uploads


def _missing(why: str) -> RequestError:
    return RequestError(
        f"{why}: send the image in the multipart file field {FIELD!r}, as an image/* body, "
        'or as JSON {"instances": [{"b64": "..."}]}',
        code="missing_image",
    )


def _from_multipart(request: Request) -> list[Upload]:
    files = request.files.getlist(FIELD)
    if not files:
        others = sorted(set(request.files) | set(request.form))
        raise _missing(f"no file field {FIELD!r} (found: {others or 'nothing'})")
    return [Upload(f.read(), f.filename or None) for f in files]


def _from_json(request: Request) -> list[Upload]:
    try:
        data = read_json(request.get_data(cache=False), "the JSON body")
    except RequestError as exc:
        if exc.code == "invalid_json":  # this route's message says the shape it wants
            raise _bad_shape() from None
        raise
    try:
        body = InstancesRequest.model_validate(data)
    except ValidationError as exc:
        index = _first_bad_instance(exc)
        if index is None:
            raise _bad_shape() from None
        _decode([item["b64"] for item in data["instances"][:index]])  # met first, told first
        raise RequestError(
            f'instances[{index}] must be an object {{"b64": "<base64 image>"}}',
            code="invalid_json",
        ) from None
    return _decode([instance.b64 for instance in body.instances])


def _decode(encoded: list[str]) -> list[Upload]:
    return [Upload(decode_base64(text, f"instances[{i}].b64")) for i, text in enumerate(encoded)]


def _bad_shape() -> RequestError:
    return RequestError(f"the JSON body must be {JSON_SHAPE}", code="invalid_json")


def _first_bad_instance(error: ValidationError) -> int | None:
    """The index of the first instance that is not {"b64": "..."}; None if the body is off."""
    indexes = [
        e["loc"][1]
        for e in error.errors()
        if len(e["loc"]) >= 2 and e["loc"][0] == "instances" and isinstance(e["loc"][1], int)
    ]
    return min(indexes) if indexes else None
