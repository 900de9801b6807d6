"""The tensors the inference protocols exchange with this service's models, and the binary
tensor data extension's encoding (length-prefixed BYTES, raw little-endian numbers).

The protocol adapters (v2.py, v2_rest.py, v2_grpc.py, tfserving.py) read requests into these
types.
"""

from __future__ import annotations

import struct

import numpy as np

from classifier.errors import ClassifierError
from classifier.spec import InputSpec

IMAGE_INPUT = "image"  # BYTES [N]: each element an encoded image file
PIXELS_INPUT = "input"  # FP32 or UINT8 [N, H, W, 3]: pixels in the model's 0-255 range
PROBABILITIES = "probabilities"  # FP32 [N, C]
LABEL = "label"  # BYTES [N]
OUTPUTS = (PROBABILITIES, LABEL)
PIXEL_DATATYPES = {"FP32": np.dtype("<f4"), "UINT8": np.dtype(np.uint8)}


class ProtocolError(ClassifierError):
    """A protocol request that does not fit the protocol or the model."""

    code = "invalid_request"


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary tensor data after it (Inference-Header-Content-Length)."""
    if header_length is None:
        return body, b""
    try:
        size = int(header_length)
    except ValueError:
        raise ProtocolError(
            f"Inference-Header-Content-Length {header_length!r} is not a number"
        ) from None
    if not 0 <= size <= len(body):
        raise ProtocolError(
            f"Inference-Header-Content-Length {size} lies outside the body of {len(body)} bytes"
        )
    return body[:size], body[size:]


def take_binary(binary: bytes, sizes: list[int]) -> list[bytes]:
    """Cut the binary section into one piece per size; the sizes must add up to all of it."""
    if any(not isinstance(size, int) or isinstance(size, bool) or size < 0 for size in sizes):
        raise ProtocolError("binary_data_size must be a whole number >= 0")
    if sum(sizes) != len(binary):
        raise ProtocolError(
            f"the inputs' binary_data_size add up to {sum(sizes)} bytes, but {len(binary)} "
            "bytes of binary data follow the JSON header"
        )
    pieces, offset = [], 0
    for size in sizes:
        pieces.append(binary[offset : offset + size])
        offset += size
    return pieces


def pack_bytes(items: list[bytes]) -> bytes:
    """BYTES elements, each preceded by its length as a 4-byte little-endian integer."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def unpack_bytes(raw: bytes, count: int) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ProtocolError("BYTES data ends inside an element's 4-byte length")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise ProtocolError(f"a BYTES element claims {size} bytes past the end of its data")
        items.append(raw[offset : offset + size])
        offset += size
    if len(items) != count:
        raise ProtocolError(f"the shape says {count} BYTES elements, the data holds {len(items)}")
    return items


def pixels(values: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Check a pixel tensor against the model: shape [N, H, W, 3], finite values in 0-255."""
    if values.ndim != 4 or values.shape[1:] != spec.shape:
        raise ProtocolError(
            f"input {PIXELS_INPUT!r} must have shape [N, {', '.join(map(str, spec.shape))}], "
            f"got {list(values.shape)}"
        )
    if values.dtype != np.uint8:
        values = values.astype(np.float32, copy=False)
        if (
            not np.all(np.isfinite(values))
            or values.min(initial=0) < 0
            or values.max(initial=0) > 255
        ):
            raise ProtocolError(f"input {PIXELS_INPUT!r} must hold finite values in [0, 255]")
    return values


def check_k(k: int, class_names: tuple[str, ...]) -> None:
    """The classification extension's k: from 1 to the model's class count."""
    if not 1 <= k <= len(class_names):
        raise ProtocolError(f"classification must be between 1 and {len(class_names)}, got {k}")


def top_k(probabilities: np.ndarray, k: int, class_names: tuple[str, ...]) -> list[list[str]]:
    """The classification extension: per image the k best as "score:index:label", best first."""
    check_k(k, class_names)
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [
        [f"{row[i]:f}:{i}:{class_names[i]}" for i in best]
        for row, best in zip(probabilities, order, strict=True)
    ]
