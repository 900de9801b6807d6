"""Fuzz the decoder with mutated real images of every allowed format and some refused ones.

Each input must give a 150x150x3 uint8 array or an ImageError, never another exception,
within a time bound; resident memory must stay bounded over the whole run.
Bounded: FUZZ_EXAMPLES examples (300 by default).
"""

import os
import resource
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from classifier.errors import ImageError
from classifier.preprocess import decode_image
from service.errors import http_status
from tests.helpers import encode, noise_image

MAX_SECONDS_PER_INPUT = 2.0
MAX_RSS_GROWTH_MB = 300


def _seeds() -> list[bytes]:
    rgb = noise_image((48, 40), seed=1)
    frames = [noise_image((32, 32), seed=i) for i in range(3)]
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        encode(rgb, "JPEG", quality=80),
        encode(rgb, "JPEG", quality=80, exif=exif, progressive=True),
        encode(rgb, "PNG"),
        encode(rgb.convert("RGBA"), "PNG"),
        encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        encode(Image.fromarray(np.arange(1024, dtype=np.uint16).reshape(32, 32) * 60), "PNG"),
        encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        encode(rgb, "BMP"),
        encode(rgb, "WEBP", quality=80),
        encode(rgb, "TIFF"),
        encode(rgb.resize((16, 16)), "ICO"),
        b"GIF89a",
        b"",
    ]


SEEDS = _seeds()


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "duplicate", "zero"]))
        if kind == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif kind == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif not data:
            continue
        elif kind == "flip":
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "duplicate":
            start = draw(st.integers(0, len(data) - 1))
            chunk = data[start : start + draw(st.integers(1, 64))]
            at = draw(st.integers(0, len(data)))
            data[at:at] = chunk
        elif kind == "zero":
            at = draw(st.integers(0, len(data) - 1))
            data[at : at + 4] = b"\x00" * len(data[at : at + 4])
    return bytes(data)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def rss_baseline():
    decode_image(SEEDS[0])
    before = rss_mb()
    yield
    assert rss_mb() - before < MAX_RSS_GROWTH_MB


@given(data=mutated())
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
def test_every_input_gives_an_array_or_an_image_error(rss_baseline, data):
    started = time.perf_counter()
    try:
        out = decode_image(data)
    except ImageError as exc:
        assert http_status(exc.code) in (400, 413)
    else:
        assert out.shape == (150, 150, 3) and out.dtype == np.uint8
    assert time.perf_counter() - started < MAX_SECONDS_PER_INPUT


def test_the_seeds_themselves_behave():
    codes = []
    for data in SEEDS:
        try:
            decode_image(data)
            codes.append("ok")
        except ImageError as exc:
            codes.append(exc.code)
    assert codes[:9] == ["ok"] * 9
    assert codes[9:11] == ["unsupported_format"] * 2
