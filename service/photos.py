"""Photos on disk, content-addressed: a photo is named by the SHA-256 of its bytes and the
extension of its format (every file is written whole or not at all, fsynced where it must
survive a crash: classifier.durable.write_atomically)."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image

from classifier.spec import ALLOWED_FORMATS

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp"}
MEDIA_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "webp": "image/webp",
}
# Pillow names a file of an accepted format by its variant: a JPEG that holds more than one
# image (MPO: many phones' and cameras' photos) is opened as JPEG, decoded as one, and reported
# as MPO.
VARIANTS = {"MPO": "JPEG"}
assert set(EXTENSIONS) == set(ALLOWED_FORMATS)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def extension(data: bytes) -> str:
    """The extension of an image file's format (one the decoder accepts; read from its header
    only, nothing decoded); ValueError for anything else."""
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            return EXTENSIONS[VARIANTS.get(image.format, image.format)]
    except (OSError, KeyError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError("not an image of an accepted format") from None


def png(pixels: np.ndarray) -> bytes:
    """Pixels a client sent as a tensor (H, W, 3), 0-255, as a PNG file."""
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()
