"""Read the images of a predict request: multipart files, a raw image body, or JSON base64."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from flask import Request
from pydantic import ValidationError

from service.errors import RequestError
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
    elif mimetype.startswith("image/"):
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
            f"the file field {FIELD!r}, an image/* body, or application/json with "
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
        body = InstancesRequest.model_validate(json.loads(request.get_data(cache=False)))
    except ValidationError as exc:
        raise _invalid_instances(exc) from None
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the stack
        raise RequestError(f"the JSON body must be {JSON_SHAPE}", code="invalid_json") from None
    uploads = []
    for i, instance in enumerate(body.instances):
        try:
            uploads.append(Upload(base64.b64decode(instance.b64, validate=True)))
        except (binascii.Error, ValueError):
            raise RequestError(
                f"instances[{i}].b64 is not valid base64", code="invalid_base64"
            ) from None
    return uploads


def _invalid_instances(error: ValidationError) -> RequestError:
    """Name the first instance that is not {"b64": "..."}, or the body's shape."""
    loc = error.errors()[0]["loc"]
    if len(loc) >= 2 and loc[0] == "instances" and isinstance(loc[1], int):
        return RequestError(
            f'instances[{loc[1]}] must be an object {{"b64": "<base64 image>"}}',
            code="invalid_json",
        )
    return RequestError(f"the JSON body must be {JSON_SHAPE}", code="invalid_json")
