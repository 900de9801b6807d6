"""Photos on disk, content-addressed: a photo is named by the SHA-256 of its bytes and the
extension of its format, and every file is written whole or not at all (a temporary file
beside it, renamed over it; fsynced where it must survive a crash)."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from classifier.durable import fsync
from classifier.spec import ALLOWED_FORMATS

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp"}
MEDIA_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "webp": "image/webp",
}
TEMP_PREFIX = ".tmp-"  # hidden: class-folder readers (training.data) never see one
assert set(EXTENSIONS) == set(ALLOWED_FORMATS)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def extension(data: bytes) -> str:
    """The extension of an image file's format (one the decoder accepts; read from its header
    only, nothing decoded); ValueError for anything else."""
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            return EXTENSIONS[image.format]
    except (OSError, KeyError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError("not an image of an accepted format") from None


def png(pixels: np.ndarray) -> bytes:
    """Pixels a client sent as a tensor (H, W, 3), 0-255, as a PNG file."""
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def write_atomically(path: Path, data: bytes, *, durable: bool) -> None:
    """Write `data` as `path`: into a hidden temporary file in the same folder, then renamed
    over it, so a reader sees the whole file or none. `durable`: the file and the folder
    entry are fsynced before this returns (they survive a crash)."""
    handle, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes it private; the trainer may run as another user
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    if durable:
        fsync(path.parent)
