"""Read the images of this service's own predict request: multipart files, a raw image body,
or JSON base64."""

from __future__ import annotations

import logging

from flask import Request
from pydantic import ValidationError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser
from werkzeug.http import parse_options_header

from service.dataplane import Upload
from service.errors import RequestError
from service.protocols.own_schemas import InstancesRequest
from service.protocols.rest import decode_base64, read_json

FIELD = "image"
JSON_SHAPE = '{"instances": [{"b64": "<base64 image>"}, ...]}'

# A body the fast path does not take is parsed again by Werkzeug, which decides what it is:
# the parser's own warnings about it would only repeat that.
logging.getLogger("python_multipart").setLevel(logging.ERROR)


def read_uploads(request: Request) -> list[Upload]:
    """The images in the request, in order (their count is checked by the data plane);
    raises RequestError otherwise."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        uploads = _from_multipart(request)
    elif is_upload(mimetype):
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


def is_upload(mimetype: str) -> bool:
    """Whether a body of this media type is images (multipart files or a raw image), as
    opposed to JSON. On the /v1/models/...:predict routes, which TensorFlow Serving's predict
    shares, any other body is TensorFlow Serving's JSON request, whatever its Content-Type
    says: TensorFlow Serving parses every body as JSON (curl's `-d` sends it as a form)."""
    return (
        mimetype == "multipart/form-data"
        or mimetype.startswith("image/")
        or mimetype == "application/octet-stream"
    )


def _missing(why: str) -> RequestError:
    return RequestError(
        f"{why}: send the image in the multipart file field {FIELD!r}, as an image/* body, "
        'or as JSON {"instances": [{"b64": "..."}]}',
        code="missing_image",
    )


def _from_multipart(request: Request) -> list[Upload]:
    uploads = _image_parts(request)
    if uploads is not None:
        return uploads
    files = request.files.getlist(FIELD)  # Werkzeug's parser: anything but a plain body
    if not files:
        # a name Werkzeug cannot read is None: sorted beside the others as text, not a 500
        others = sorted(set(request.files) | set(request.form), key=str)
        raise _missing(f"no file field {FIELD!r} (found: {others or 'nothing'})")
    return [Upload(f.read(), f.filename or None) for f in files]


def _image_parts(request: Request) -> list[Upload] | None:
    """The files of the field `image` when the body is plain (see `plain_images`); None
    for anything else, which Werkzeug's parser then reads."""
    boundary = request.mimetype_params.get("boundary", "")
    body = request.get_data(cache=True)  # kept: Werkzeug's parser reads it if need be
    return plain_images(body, boundary, request.max_form_parts, request.max_form_memory_size)


def plain_images(
    body: bytes, boundary: str, max_parts: int | None, max_field_bytes: int | None
) -> list[Upload] | None:
    """The files of the field `image`, when the body is a plain, well-formed multipart body;
    None for anything else, which Werkzeug's parser then reads, so its answers (and its
    limits' errors) are unchanged.

    Werkzeug's parser compiles two regular expressions for each body's boundary and costs
    about 0.2 ms of CPU per 40 kB photo; python-multipart reads the same body in a tenth of
    that. "Plain" means: CRLF line breaks, the first delimiter at the start, the delimiter
    nowhere but between the parts, clean header lines, every part within MAX_FORM_PARTS
    (`max_parts`) and every non-file field within MAX_FORM_MEMORY_SIZE (`max_field_bytes`),
    and at least one file `image`. On such a body both parsers find the same parts with the
    same names and file names (tests/service/test_uploads.py checks them against each other).
    """
    if not boundary.isascii() or not 0 < len(boundary) <= 70:  # RFC 2046's longest
        return None
    delimiter = b"--" + boundary.encode()
    if not body.startswith(delimiter + b"\r\n"):
        return None
    if max_parts is None or max_parts >= 1:
        one = _one_file(body, delimiter)
        if one is not None:
            return [one]
    parts = _Parts(max_parts, max_field_bytes)
    parser = MultipartParser(boundary.encode(), parts.callbacks)
    try:
        parser.write(body)
    except (MultipartParseError, _NotPlain):
        return None
    if not parts.ended or body.count(delimiter) != len(parts.found) + 1:
        return None
    images = [
        Upload(data, filename or None)
        for name, filename, data in parts.found
        if name == FIELD and filename is not None
    ]
    return images or None


def _one_file(body: bytes, delimiter: bytes) -> Upload | None:
    """The commonest body, one file `image` as clients send it, read without a parser:
    the delimiter, its header lines, the file, the closing delimiter; each header line a
    Content-Disposition or a Content-Type read as `_Parts` reads it. None for any other
    body (python-multipart then reads it: the same answer, at about five times the cost)."""
    closing = b"\r\n" + delimiter + b"--\r\n"
    if not body.endswith(closing) or body.count(delimiter) != 2:
        return None
    start = len(delimiter) + 2
    end = body.find(b"\r\n\r\n", start)
    if end < 0 or end + 4 > len(body) - len(closing):
        return None
    headers = []
    for line in body[start:end].split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon or name.lower() not in (b"content-disposition", b"content-type"):
            return None
        headers.append((name, value))
    try:
        name, filename, data = _part(headers, body[end + 4 : len(body) - len(closing)])
    except _NotPlain:
        return None
    if name != FIELD or filename is None or len({n.lower() for n, _ in headers}) != len(headers):
        return None
    return Upload(data, filename or None)


class _NotPlain(Exception):
    """The body is not one the fast path takes."""


class _Parts:
    """python-multipart's callbacks: each part's name, file name (None for a field) and data,
    its headers read as Werkzeug reads them."""

    def __init__(self, max_parts: int | None, max_field_bytes: int | None) -> None:
        self.max_parts = max_parts
        self.max_field_bytes = max_field_bytes
        self.found: list[tuple[str | None, str | None, bytes]] = []
        self.ended = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._data: list[bytes] = []
        self.callbacks = {
            "on_part_begin": self._begin,
            "on_header_field": self._field,
            "on_header_value": self._value,
            "on_part_data": self._chunk,
            "on_part_end": self._end,
            "on_end": self._done,
        }

    def _begin(self) -> None:
        self._headers, self._data = [], []

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._headers.append((data[start:end], b""))

    def _value(self, data: bytes, start: int, end: int) -> None:
        name, value = self._headers[-1]
        self._headers[-1] = (name, value + data[start:end])

    def _chunk(self, data: bytes, start: int, end: int) -> None:
        self._data.append(data[start:end])

    def _end(self) -> None:
        if self.max_parts is not None and len(self.found) >= self.max_parts:
            raise _NotPlain  # Werkzeug answers 413
        name, filename, data = _part(self._headers, b"".join(self._data))
        limit = self.max_field_bytes
        if filename is None and limit is not None and len(data) > limit:
            raise _NotPlain  # Werkzeug answers 413
        self.found.append((name, filename, data))

    def _done(self) -> None:
        self.ended = True


def _part(headers: list[tuple[bytes, bytes]], data: bytes) -> tuple[str | None, str | None, bytes]:
    """A part's name, file name (None for a field) and data, from its header lines as
    Werkzeug reads them (the first Content-Disposition); _NotPlain where a header is odd."""
    disposition = None
    for name, value in headers:
        if b"\n" in value or b"\r" in value:
            raise _NotPlain
        try:
            text = value.decode().strip(" \t")
        except UnicodeDecodeError:
            raise _NotPlain from None
        if disposition is None and name.lower() == b"content-disposition":
            disposition = text
    if disposition is None:
        raise _NotPlain
    options = parse_options_header(disposition)[1]
    return options.get("name"), options.get("filename"), data


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
