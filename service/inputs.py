"""Read the images of a predict request: multipart files, a raw image body, or JSON base64."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np
from flask import Request
from pydantic import ValidationError

from classifier.errors import ImageError
from classifier.preprocess import decode_image
from classifier.spec import InputSpec
from service.errors import RequestError
from service.limits import read_json
from service.schemas import InstancesRequest

FIELD = "image"
JSON_SHAPE = '{"instances": [{"b64": "<base64 image>"}, ...]}'


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None = None


def read_uploads(request: Request, max_images: int) -> list[Upload]:
    """The images in the request, in order; raises RequestError otherwise."""
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
    if len(uploads) > max_images:
        raise RequestError(
            f"{len(uploads)} images in one request; the limit is {max_images}",
            code="too_many_images",
        )
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


def decode_base64(text: object, where: str) -> bytes:
    """Strict base64 (no stray characters); `where` names the field in the error."""
    try:
        if not isinstance(text, str):
            raise ValueError
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{where} is not valid base64", code="invalid_base64") from None


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


def decode_uploads(uploads: list[Upload], spec: InputSpec, max_pixels: int) -> np.ndarray:
    """Decode in the request thread, in parallel with the model; the error names the file."""
    images = np.empty((len(uploads), *spec.shape), dtype=np.uint8)
    for index, upload in enumerate(uploads):
        try:
            images[index] = decode_image(upload.data, spec, max_pixels=max_pixels)
        except ImageError as exc:
            exc.message = f"{upload.filename or f'image {index}'}: {exc.message}"
            exc.details = {"index": index, "filename": upload.filename}
            raise
    return images
