"""Read the images of a predict request: multipart files, a raw image body, or JSON base64."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from flask import Request

from service.errors import ApiError

FIELD = "image"


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None = None


def read_uploads(request: Request, max_images: int) -> list[Upload]:
    """The images in the request, in order; raises ApiError (400, 413 or 415) otherwise."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        uploads = _from_multipart(request)
    elif mimetype.startswith("image/"):
        uploads = [Upload(request.get_data(cache=False))]
    elif mimetype == "application/json":
        uploads = _from_json(request)
    elif mimetype == "application/x-www-form-urlencoded":
        raise _missing("a url-encoded form cannot carry a file; use multipart/form-data")
    elif not mimetype and not request.content_length and not request.get_data(cache=False):
        raise _missing("the request has no body")
    else:
        raise ApiError(
            f"unsupported Content-Type {mimetype or '(none)'!r}; send multipart/form-data with "
            f"the file field {FIELD!r}, an image/* body, or application/json with "
            '{"instances": [{"b64": "..."}]}',
            code="unsupported_media_type",
            status=415,
        )
    if not uploads:
        raise _missing("the request holds no image")
    if len(uploads) > max_images:
        raise ApiError(
            f"{len(uploads)} images in one request; the limit is {max_images}",
            code="too_many_images",
            status=413,
        )
    return uploads


def _missing(why: str) -> ApiError:
    return ApiError(
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
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
        raise ApiError(
            'the JSON body must be {"instances": [{"b64": "<base64 image>"}, ...]}',
            code="invalid_json",
        )
    uploads = []
    for i, instance in enumerate(body["instances"]):
        encoded = instance.get("b64") if isinstance(instance, dict) else None
        if not isinstance(encoded, str):
            raise ApiError(
                f'instances[{i}] must be an object {{"b64": "<base64 image>"}}',
                code="invalid_json",
            )
        try:
            uploads.append(Upload(base64.b64decode(encoded, validate=True)))
        except (binascii.Error, ValueError):
            raise ApiError(
                f"instances[{i}].b64 is not valid base64", code="invalid_base64"
            ) from None
    return uploads
