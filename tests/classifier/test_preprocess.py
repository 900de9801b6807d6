import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from classifier.errors import ImageError
from classifier.preprocess import declared_size, decode_image, to_rgb
from classifier.spec import DEFAULT_SPEC, InputSpec
from service.errors import http_status
from tests.helpers import encode, jpeg_bytes, noise_image, png_with_header_size, solid


def decode_error(data: bytes, **kwargs) -> ImageError:
    with pytest.raises(ImageError) as info:
        decode_image(data, **kwargs)
    return info.value


def test_jpeg_gives_uint8_array_of_spec_shape():
    out = decode_image(jpeg_bytes((300, 200)))
    assert out.shape == (150, 150, 3)
    assert out.dtype == np.uint8


def test_size_comes_from_the_spec():
    out = decode_image(jpeg_bytes(), InputSpec(height=32, width=48))
    assert out.shape == (32, 48, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "WEBP"])
def test_every_allowed_format_decodes_to_its_colour(fmt):
    params = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    out = decode_image(encode(solid((200, 30, 60)), fmt, **params))
    assert np.abs(out.astype(int) - [200, 30, 60]).max() <= 4


def test_resize_uses_the_documented_filter():
    image = noise_image((97, 61), seed=3)
    expected = np.asarray(image.resize((150, 150), Image.Resampling.BILINEAR))
    assert np.array_equal(decode_image(encode(image, "PNG")), expected)


def test_large_jpeg_is_draft_decoded_close_to_a_full_decode():
    image = solid((10, 120, 240), size=(1600, 1200))
    data = encode(image, "JPEG", quality=95)
    assert np.abs(decode_image(data).astype(int) - [10, 120, 240]).max() <= 4


def test_a_multi_picture_jpeg_is_draft_decoded_as_its_picture_alone():
    # Phones' and cameras' JPEGs with a depth or HDR gain map after the picture open as MPO.
    image = noise_image((200, 150), seed=7).resize((1600, 1200), Image.Resampling.BICUBIC)
    small = image.resize((160, 120))
    mpo = encode(image, "MPO", save_all=True, append_images=[small], quality=90)
    assert Image.open(io.BytesIO(mpo)).format == "MPO"
    assert np.array_equal(decode_image(mpo), decode_image(encode(image, "JPEG", quality=90)))


def test_grayscale_becomes_equal_rgb_channels():
    out = decode_image(encode(solid(77, mode="L"), "PNG"))
    assert (out == 77).all()


def test_one_bit_image():
    out = decode_image(encode(solid(1, mode="1"), "PNG"))
    assert (out == 255).all()


def test_palette_image_keeps_its_colours():
    image = solid((10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    out = decode_image(encode(image, "PNG"))
    assert np.abs(out.astype(int) - [10, 200, 30]).max() <= 2


def test_rgba_transparency_is_composited_on_white():
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 10, 20))  # left half opaque red
    out = decode_image(encode(image, "PNG"), InputSpec(height=20, width=20))
    assert (out[:, :8] == [255, 0, 0]).all()
    assert (out[:, 12:] == [255, 255, 255]).all()


def test_half_transparent_black_becomes_mid_grey():
    out = decode_image(encode(Image.new("RGBA", (10, 10), (0, 0, 0, 128)), "PNG"))
    assert np.abs(out.astype(int) - 127).max() <= 1


def test_grey_with_alpha():
    out = decode_image(encode(Image.new("LA", (10, 10), (0, 0)), "PNG"))
    assert (out == 255).all()


def test_palette_with_transparency_is_composited():
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(1, (0, 0, 5, 10))
    image.info["transparency"] = 0
    out = decode_image(encode(image, "GIF", transparency=0), InputSpec(height=10, width=10))
    assert (out[:, :4] == [0, 255, 0]).all()
    assert (out[:, 6:] == [255, 255, 255]).all()


def test_cmyk_is_converted():
    out = decode_image(encode(Image.new("CMYK", (10, 10), (0, 0, 0, 0)), "JPEG", quality=95))
    assert (out >= 250).all()


def test_sixteen_bit_is_scaled_not_clamped():
    values = np.array([[0, 1000], [32896, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    out = np.asarray(to_rgb(image))
    assert out[..., 0].tolist() == [[0, 4], [128, 255]]
    decoded = decode_image(encode(image, "PNG"), InputSpec(height=2, width=2, resample="nearest"))
    assert decoded[..., 1].tolist() == [[0, 4], [128, 255]]


def test_sixteen_bit_grey_with_a_transparent_value_is_composited_on_white():
    values = np.array([[0, 1000], [30000, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(values), "PNG", transparency=30000)
    decoded = decode_image(data, InputSpec(height=2, width=2, resample="nearest"))
    assert decoded[..., 0].tolist() == [[0, 4], [255, 255]]  # as 8-bit grey's tRNS does
    assert (decoded[1, 0] == 255).all()


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 30), (255, 0, 0))
    image.paste((0, 0, 255), (30, 0, 60, 30))  # left red, right blue as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    out = decode_image(encode(image, "JPEG", quality=95, exif=exif), InputSpec(height=30, width=30))
    top, bottom = out[:10].reshape(-1, 3).mean(0), out[-10:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 50  # the left (red) side is now on top
    assert bottom[2] > 200 and bottom[0] < 50


@pytest.mark.parametrize("orientation", [6, 8])
def test_a_quarter_turned_jpeg_is_draft_decoded_as_the_same_picture_upright(orientation):
    """The draft size is asked of the picture as stored, width and height swapped for an
    EXIF quarter turn: before, a 1600x400 photo shown 400x1600, for a 100x50 input with a
    gap of 2, was drafted at 1/4 (100 wide once turned, no gap left) rather than 1/2."""
    stored = noise_image((200, 50), seed=5).resize((1600, 400), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = orientation
    turned = encode(stored, "JPEG", quality=95, exif=exif)
    shown = stored.transpose(
        Image.Transpose.ROTATE_270 if orientation == 6 else Image.Transpose.ROTATE_90
    )
    upright = encode(shown, "JPEG", quality=95)
    spec = InputSpec(height=50, width=100, jpeg_draft_gap=2)
    difference = decode_image(turned, spec).astype(int) - decode_image(upright, spec)
    assert np.abs(difference).mean() < 0.5  # JPEG's own loss; drafted at 1/4: 1.3


def test_animated_gif_takes_the_first_frame():
    frames = [solid((255, 0, 0)), solid((0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    out = decode_image(data)
    assert (out[..., 0] > 240).all() and (out[..., 2] < 15).all()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        (b"just some text, not a picture", "not_an_image"),
        (b"\x89PNG\r\n\x1a\n" + b"\xff" * 40, "not_an_image"),
        (png_with_header_size(0, 10), "empty_image"),
        (png_with_header_size(10, 0), "empty_image"),
    ],
)
def test_bad_input_has_its_own_code(data, code):
    error = decode_error(data)
    assert error.code == code
    assert http_status(error.code) == 400


def test_a_palette_png_with_more_transparency_entries_than_a_palette_holds_is_corrupt():
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 255, 255, 255])
    data = encode(image, "PNG")
    trns = b"\x00" * 257  # one alpha per palette entry: at most 256; Pillow loads it all the same
    chunk = (
        struct.pack(">I", len(trns))
        + b"tRNS"
        + trns
        + struct.pack(">I", zlib.crc32(b"tRNS" + trns))
    )
    at = data.index(b"IDAT") - 4
    error = decode_error(data[:at] + chunk + data[at:])
    assert (error.code, http_status(error.code)) == ("corrupt_image", 400)


def test_zero_width_bmp_is_an_empty_image():
    data = bytearray(encode(solid((1, 2, 3), (4, 4)), "BMP"))
    data[18:22] = b"\x00\x00\x00\x00"
    assert decode_error(bytes(data)).code == "empty_image"


def test_disallowed_format_is_named():
    error = decode_error(encode(solid((1, 2, 3)), "TIFF"))
    assert error.code == "unsupported_format"
    assert "TIFF" in error.message


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(fmt):
    data = encode(noise_image((200, 200)), fmt)
    assert decode_error(data[: len(data) // 2]).code == "truncated_image"


def test_pixel_limit_is_configurable_and_413():
    error = decode_error(jpeg_bytes((100, 100)), max_pixels=9_999)
    assert (error.code, http_status(error.code)) == ("image_too_large", 413)
    assert decode_image(jpeg_bytes((100, 100)), max_pixels=10_000).shape == DEFAULT_SPEC.shape


@pytest.mark.parametrize("side", [10_000, 100_000])  # Pillow's warning band, then its error band
def test_decompression_bombs_are_refused_before_decoding(side):
    error = decode_error(png_with_header_size(side, side), max_pixels=10**12)
    assert (error.code, http_status(error.code)) == ("image_too_large", 413)


def test_header_over_our_limit_is_refused_without_decoding():
    error = decode_error(png_with_header_size(8000, 8000))
    assert error.code == "image_too_large"
    assert "limit is" in error.message


def test_declared_size_reads_headers():
    for fmt in ("PNG", "GIF", "BMP", "JPEG"):
        assert declared_size(encode(solid((0, 0, 0), (37, 21)), fmt)) == (37, 21)
    assert declared_size(b"nothing") is None


def test_output_is_deterministic():
    data = jpeg_bytes((123, 77), seed=5)
    assert np.array_equal(decode_image(data), decode_image(data))
