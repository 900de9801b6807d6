"""Every error code the service sends, with its HTTP status and its gRPC status code, in one
table.

Core errors (classifier.errors, classifier.batching, service.registry) carry only a code; this
table gives each its status, which the HTTP edge (service/http/errors.py) and the gRPC edge
(service/grpc/calls.py) send. The README's error table, and the error responses of the OpenAPI
document, are generated from it. No Flask and no grpc here.
"""

from __future__ import annotations

from dataclasses import dataclass

from classifier.errors import ClassifierError


@dataclass(frozen=True)
class ErrorKind:
    status: int
    codes: tuple[str, ...]
    when: str
    grpc: str  # the name of its grpc.StatusCode


ERRORS: tuple[ErrorKind, ...] = (
    ErrorKind(
        400,
        ("missing_image",),
        "no image in the request (the message names the field `image`)",
        "INVALID_ARGUMENT",
    ),
    ErrorKind(
        400,
        (
            "empty_file",
            "not_an_image",
            "unsupported_format",
            "empty_image",
            "truncated_image",
            "corrupt_image",
        ),
        "the bytes are not an image this service accepts (with `details.index` and "
        "`details.filename` when one of several is bad)",
        "INVALID_ARGUMENT",
    ),
    ErrorKind(
        400,
        ("invalid_json", "invalid_base64"),
        "a JSON body that is not JSON, nests deeper than `MAX_JSON_DEPTH`, or is not shaped "
        '`{"instances": [{"b64": ...}]}`',
        "INVALID_ARGUMENT",
    ),
    ErrorKind(
        400,
        ("invalid_request",),
        "a V2 or TensorFlow Serving request that does not fit the protocol or the model "
        "(input or output name, datatype, shape, binary sizes, signature, top k)",
        "INVALID_ARGUMENT",
    ),
    ErrorKind(
        400,
        ("invalid_parameter",),
        "a query parameter out of its range (`top_k`: 1 to the model's class count)",
        "INVALID_ARGUMENT",
    ),
    ErrorKind(
        400,
        ("bad_request",),
        "a request the HTTP layer cannot parse (a malformed form, say)",
        "INVALID_ARGUMENT",
    ),
    ErrorKind(
        400,
        ("unknown_label", "invalid_feedback"),
        "feedback whose label is not one of the model's classes (the message and "
        '`details.classes` list them), or a feedback body that is neither JSON `{"request_id", '
        '"label"}` nor a multipart `image` with a form field `label`',
        "INVALID_ARGUMENT",
    ),
    ErrorKind(
        401,
        ("unauthorized",),
        "API keys are on and the request has none, or an unknown one (with `WWW-Authenticate`)",
        "UNAUTHENTICATED",
    ),
    ErrorKind(
        404,
        ("model_not_found", "version_not_found", "not_found"),
        "unknown model, version not loaded, or unknown path",
        "NOT_FOUND",
    ),
    ErrorKind(
        404,
        ("not_captured", "feedback_off"),
        "feedback on a request id that was not captured (or no longer is), or on a server "
        "without `FEEDBACK_DIR`",
        "NOT_FOUND",
    ),
    ErrorKind(
        405,
        ("method_not_allowed",),
        "wrong method (the `Allow` header lists the right ones)",
        "UNIMPLEMENTED",
    ),
    ErrorKind(
        413,
        ("payload_too_large",),
        "body over `MAX_UPLOAD_BYTES` (or a JSON body over `MAX_JSON_BYTES`), or too many "
        "form parts",
        "RESOURCE_EXHAUSTED",
    ),
    ErrorKind(
        413,
        ("image_too_large",),
        "more pixels than `MAX_IMAGE_PIXELS` (decompression bombs)",
        "INVALID_ARGUMENT",
    ),
    ErrorKind(
        413,
        ("too_many_images",),
        "more images than `MAX_IMAGES_PER_REQUEST` in one request",
        "INVALID_ARGUMENT",
    ),
    ErrorKind(
        415,
        ("unsupported_media_type",),
        "a content type other than multipart, `image/*`, `application/octet-stream` or JSON",
        "INVALID_ARGUMENT",
    ),
    ErrorKind(
        429,
        ("rate_limited",),
        "over the per-client limit of the nginx in front (`deploy/nginx.conf`), with `Retry-After`",
        "RESOURCE_EXHAUSTED",
    ),
    ErrorKind(
        502,
        ("upstream_unavailable",),
        "no replica behind the nginx in front (`deploy/nginx.conf`) could be reached (all "
        "starting, restarting or down), with `Retry-After`",
        "UNAVAILABLE",
    ),
    ErrorKind(
        503, ("model_not_ready",), "no loadable model version (with `Retry-After`)", "UNAVAILABLE"
    ),
    ErrorKind(
        503,
        ("queue_full",),
        "the inference queue is full: back off and retry (`Retry-After`)",
        "RESOURCE_EXHAUSTED",
    ),
    ErrorKind(
        503,
        ("feedback_not_stored",),
        "the feedback could not be written (`FEEDBACK_DIR` full or read-only): nothing was "
        "stored, try again",
        "UNAVAILABLE",
    ),
    ErrorKind(
        504,
        ("deadline_exceeded",),
        "no answer within `REQUEST_DEADLINE_MS` (from the nginx in front: no replica answered "
        "within its 60 s)",
        "DEADLINE_EXCEEDED",
    ),
    ErrorKind(
        500,
        ("internal_error", "inference_failed"),
        "a bug, or a model call that failed; logged on the server, no details sent",
        "INTERNAL",
    ),
)

STATUS: dict[str, int] = {code: kind.status for kind in ERRORS for code in kind.codes}
GRPC_STATUS: dict[str, str] = {code: kind.grpc for kind in ERRORS for code in kind.codes}


def http_status(code: str) -> int:
    """The status a code is sent with; a code missing from the table is a bug (500)."""
    return STATUS.get(code, 500)


def grpc_status(code: str) -> str:
    """The gRPC status code's name a code is sent with (INTERNAL when missing: a bug)."""
    return GRPC_STATUS.get(code, "INTERNAL")


class RequestError(ClassifierError):
    """The request itself is malformed (raised by a protocol adapter, while reading it)."""

    code = "bad_request"
