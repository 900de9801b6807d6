"""What `predict` takes: paths, bytes, file objects, PIL images and uint8 arrays, each made
into a named source of image file bytes that a worker thread reads when it sends them."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.files import read_file
from client.results import Failure

# One input: a path (str or os.PathLike), the bytes of an image file, a binary file object, a
# PIL image, or a uint8 array of pixels (height x width, x3 RGB or x4 RGBA).
Input = Any

ENCODED_FORMAT = "PNG"  # pixels go lossless: the server decodes what this process had


@dataclass(frozen=True)
class Item:
    """One input: the name its result carries (`file`), and how to get its bytes."""

    name: str
    load: Callable[[], bytes | Failure]
    upload_name: str  # the multipart file name (the server echoes it as `filename`)

    def read(self) -> bytes | Failure:
        """The image file's bytes, or a Failure saying why there are none."""
        try:
            return self.load()
        except (OSError, ValueError, TypeError) as exc:
            return Failure(self.name, "unreadable_input", f"{self.name}: {exc}")


def to_items(inputs: Iterable[Input]) -> list[Item]:
    """An Item per input, in order; TypeError names the first input of no known kind."""
    if isinstance(inputs, (str, bytes, os.PathLike)) or _is_image_or_array(inputs):
        raise TypeError("predict takes a list of inputs; wrap a single one in a list")
    return [to_item(value, index) for index, value in enumerate(inputs)]


def to_item(value: Input, index: int) -> Item:
    """One input as an Item; inputs without a name are called `<kind #index>`."""
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        return Item(str(value), lambda: read_file(path), sendable(path.name))
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return Item(f"<bytes #{index}>", lambda: data, f"image-{index}")
    if hasattr(value, "read"):
        given = getattr(value, "name", None)
        name = given if isinstance(given, str) else f"<file #{index}>"
        return Item(name, lambda: _read_stream(value), Path(name).name or f"image-{index}")
    kind = _is_image_or_array(value)
    if kind == "image":
        return Item(f"<image #{index}>", lambda: _encode(value), f"image-{index}.png")
    if kind == "array":
        return Item(f"<array #{index}>", lambda: _encode_array(value), f"image-{index}.png")
    raise TypeError(
        f"input #{index} is a {type(value).__name__}: give a path, bytes, a binary file "
        "object, a PIL image or a uint8 array"
    )


def sendable(name: str) -> str:
    """A file name as UTF-8 can carry it: bytes that are not UTF-8 (surrogate escapes) become
    U+FFFD, which the multipart encoder can send (the result keeps the name as it is)."""
    return os.fsencode(name).decode("utf-8", "replace")


def _is_image_or_array(value: object) -> str | None:
    """Whether `value` is a PIL image ("image") or a numpy array ("array"), without
    importing either; None when neither."""
    module = type(value).__module__
    if module.startswith("PIL.") and hasattr(value, "save"):
        return "image"
    if module == "numpy" and hasattr(value, "dtype"):
        return "array"
    return None


def _read_stream(stream) -> bytes:
    data = stream.read()
    if not isinstance(data, bytes | bytearray):
        raise TypeError("the file object gives text: open it in binary mode ('rb')")
    return bytes(data)


def _encode(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, ENCODED_FORMAT)
    return buffer.getvalue()


def _encode_array(array) -> bytes:
    import numpy as np
    from PIL import Image

    if array.dtype != np.uint8 or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))
    ):
        raise ValueError(
            f"an array must be uint8 pixels, height x width (x 3 or 4); got {array.dtype} "
            f"{array.shape}"
        )
    return _encode(Image.fromarray(np.ascontiguousarray(array)))
