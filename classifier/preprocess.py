"""The one image decoding function: bytes in, an RGB uint8 array of the model's input size out.

Training and serving both call `decode_image`, so the model sees the same pixels in both.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, UnidentifiedImageError

from classifier.errors import ImageError
from classifier.spec import (
    ALLOWED_FORMATS,
    BACKGROUND_RGB,
    DEFAULT_MAX_PIXELS,
    DEFAULT_SPEC,
    RESAMPLE_FILTERS,
    InputSpec,
)

# Bumped whenever the pixels this module produces change; recorded in model metadata.
PREPROCESSING_VERSION = 2

# A truncated file is an error, never silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Pillow only warns between its limit and twice its limit; a warning here is an error too.
warnings.simplefilter("error", Image.DecompressionBombWarning)

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
ORIENTATION_TAG = 0x0112  # EXIF


def describe(spec: InputSpec = DEFAULT_SPEC) -> dict:
    """The preprocessing recorded in model metadata."""
    return {
        "function": f"{__name__}.decode_image",
        "version": PREPROCESSING_VERSION,
        "resample": spec.resample,
        "resize": "squash to exact size (aspect ratio not kept)",
        "exif_orientation": True,
        "alpha_background": list(BACKGROUND_RGB),
        "jpeg_draft_gap": spec.jpeg_draft_gap,
        "allowed_formats": list(ALLOWED_FORMATS),
    }


def decode_image(
    data: bytes,
    spec: InputSpec = DEFAULT_SPEC,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode, orient, convert to RGB and resize; returns an array of `spec.shape`, dtype uint8.

    Raises ImageError with one of the codes: empty_file, not_an_image, unsupported_format,
    empty_image, image_too_large (status 413), truncated_image, corrupt_image.
    """
    if not data:
        raise ImageError("the uploaded file is empty", code="empty_file")
    image = _open(data, max_pixels)
    try:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageError(f"the image has no pixels ({width}x{height})", code="empty_image")
        # Pillow's own bomb limit also applies, whatever the warning filters say.
        limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
        if width * height > limit:
            raise _too_large(width * height, limit)
        if _is_jpeg(image) and spec.jpeg_draft_gap:
            gap = spec.jpeg_draft_gap
            size = (spec.width * gap, spec.height * gap)
            image.draft("RGB", size[::-1] if _turns(image) else size)
        _load(image)
        array = _pixels(_orient(image), spec)
    finally:
        image.close()
    if array.shape != spec.shape:  # pragma: no cover - guards the contract, never expected
        raise ImageError(f"decoded shape {array.shape} != {spec.shape}", code="corrupt_image")
    return array


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited onto a fixed background."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        # 16-bit (and 32-bit integer/float) greyscale holds 0-65535: scale, never clamp to white.
        values = np.asarray(image, dtype=np.float64)
        scaled = np.clip(np.rint(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        rgb = np.repeat(scaled[..., np.newaxis], 3, axis=2)
        rgb[_transparent(values, image.info.get("transparency"))] = BACKGROUND_RGB
        return Image.fromarray(rgb)
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND_RGB, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if mode == "RGB":
        return image
    return image.convert("RGB")


def _transparent(values: np.ndarray, key: object) -> np.ndarray:
    """Where a 16-bit grey PNG's tRNS value makes it transparent: those pixels take the
    background, as an 8-bit one's do (Pillow converts no 16-bit mode to RGBA)."""
    if isinstance(key, int) and not isinstance(key, bool):
        return values == key
    return np.zeros(values.shape, dtype=bool)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(str(exc), code="image_too_large") from None
    except UnidentifiedImageError:
        size = declared_size(data)
        if size is not None and 0 in size:
            raise ImageError(
                f"the image has no pixels ({size[0]}x{size[1]})", code="empty_image"
            ) from None
        found = _identify_any(data)
        if found:
            raise ImageError(
                f"{found} images are not accepted; send one of {', '.join(ALLOWED_FORMATS)}",
                code="unsupported_format",
            ) from None
        raise ImageError(
            f"the data is not a recognised image; send one of {', '.join(ALLOWED_FORMATS)}",
            code="not_an_image",
        ) from None
    except Exception as exc:  # header parsers raise many types on garbage
        raise ImageError(f"the image header is corrupt: {exc}", code="corrupt_image") from None


def declared_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG, GIF, BMP or JPEG header, read without Pillow.

    Pillow refuses to open a zero-size image at all; this tells that case apart from garbage.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Scan JPEG markers for the first start-of-frame and read its size."""
    pos = 2
    while pos + 9 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    return None


def _identify_any(data: bytes) -> str | None:
    """Name the format of bytes that are an image, just not an allowed one (for the message)."""
    try:
        with Image.open(io.BytesIO(data)) as other:
            return other.format
    except Exception:
        return None


def _is_jpeg(image: Image.Image) -> bool:
    """A JPEG, also one Pillow opens as MPO (a multi-picture JPEG: cameras' and phones' photos
    with a depth map or HDR gain map after the picture): its picture is a plain JPEG and is
    draft-decoded as one, so it gives the same pixels as the same picture without them."""
    return isinstance(image, JpegImagePlugin.JpegImageFile)


def _load(image: Image.Image) -> None:
    try:
        image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(str(exc), code="image_too_large") from None
    except OSError as exc:
        if "truncated" in str(exc).lower():
            raise ImageError("the image file is truncated", code="truncated_image") from None
        raise ImageError(f"the image data is corrupt: {exc}", code="corrupt_image") from None
    except Exception as exc:
        raise ImageError(f"the image data is corrupt: {exc}", code="corrupt_image") from None


def _pixels(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """Convert to RGB and resize; what Pillow loaded but cannot convert (a palette PNG with
    more transparency entries than a palette holds) is corrupt, not an unexpected error."""
    try:
        rgb = to_rgb(image)
        resized = rgb.resize((spec.width, spec.height), RESAMPLE_FILTERS[spec.resample])
        return np.asarray(resized, dtype=np.uint8)
    except (ValueError, OSError) as exc:  # not MemoryError or a bug of ours: those are 500s
        raise ImageError(f"the image data is corrupt: {exc}", code="corrupt_image") from None


def _turns(image: Image.Image) -> bool:
    """Whether the EXIF orientation turns the picture a quarter (5-8: width and height
    swap), so that the draft size is asked of the stored picture the other way round."""
    try:
        return image.getexif().get(ORIENTATION_TAG) in (5, 6, 7, 8)
    except Exception:  # a broken EXIF block: _orient leaves the picture as stored too
        return False


def _orient(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, in place: most photos need none, and a copy of each cost
    its own memory pass (and a context switch at c=32). A broken EXIF block leaves the image
    as stored."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:
        return image
    return image


def _too_large(pixels: int, max_pixels: int) -> ImageError:
    return ImageError(
        f"the image has {pixels} pixels; the limit is {max_pixels}",
        code="image_too_large",
    )
