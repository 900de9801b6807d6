"""Test helpers: images made with Pillow, and real Keras models published into a store."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from classifier.metadata import MODEL_FILE
from classifier.spec import InputSpec
from classifier.store import ModelStore

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data" / "cats_vs_dogs"
SHIPPED_MODELS = REPO / "models"


def encode(image: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def solid(
    color: tuple[int, ...], size: tuple[int, int] = (40, 30), mode: str = "RGB"
) -> Image.Image:
    return Image.new(mode, size, color)


def noise_image(size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def jpeg_bytes(size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    return encode(noise_image(size, seed), "JPEG", quality=90)


def png_with_header_size(width: int, height: int) -> bytes:
    """A small PNG whose IHDR claims another size (CRC fixed), for bomb and zero-size tests."""
    data = bytearray(encode(Image.new("RGB", (4, 4), (1, 2, 3)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


# Metadata fields of a 64x64 cats/dogs model, for tests that write their own model file.
PETS_FIELDS = {
    "class_names": ["cats", "dogs"],
    "input": {"height": 64, "width": 64},
    "threshold": 0.5,
}


def publish_model(
    models_dir: Path,
    name: str = "pets",
    *,
    image_size: int = 64,
    class_names: tuple[str, str] = ("cats", "dogs"),
    seed: int = 0,
    onnx: bool = True,
) -> int:
    """Publish a real (untrained, seeded) CNN of the product's architecture; returns its version."""
    import keras

    from training.model import build_model
    from training.train import export_model

    keras.utils.set_random_seed(seed)
    spec = InputSpec(height=image_size, width=image_size)
    model = build_model(spec)

    def write(folder: Path) -> dict:
        if onnx:
            export_model(model, folder)  # the Keras file and its ONNX export, as training does
        else:
            model.save(folder / MODEL_FILE)
        return {
            "class_names": list(class_names),
            "input": spec.to_dict(),
            "threshold": 0.5,
            "metrics": {},
        }

    return ModelStore(models_dir).publish(name, write).version


def app_config(models_dir: Path, **overrides) -> dict:
    """Test settings: no background poller (tests call `load_all` themselves)."""
    return {
        "TESTING": True,
        "MODELS_DIR": str(models_dir),
        "MODEL_NAME": "pets",
        "MODEL_POLL_SECONDS": 0,
        **overrides,
    }


def make_dataset(
    root: Path,
    per_class: int = 24,
    val_per_class: int = 8,
    classes: dict[str, int] | None = None,
    noise: int = 120,
    lift: int = 120,
) -> Path:
    """Easily told apart classes, in varied sizes: noise below `noise` with one colour
    channel per class raised by `lift` (default: cats bluish, dogs reddish)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("validation", val_per_class)):
        for label, channel in (classes or {"cats": 2, "dogs": 0}).items():
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = rng.integers(50, 90, size=2)
                pixels = rng.integers(0, noise, (h, w, 3), dtype=np.uint8)
                pixels[..., channel] += lift
                Image.fromarray(pixels).save(folder / f"{label}.{i}.jpg", quality=90)
    return root


def publish_multiclass(
    models_dir: Path,
    name: str = "insects",
    class_names: tuple[str, ...] = ("ant", "bee", "cicada"),
    *,
    image_size: int = 64,
    seed: int = 0,
) -> int:
    """Publish a small real softmax model (one unit per class) with its ONNX export."""
    import keras

    from training.train import export_model

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(class_names), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    spec = InputSpec(height=image_size, width=image_size)

    def write(folder: Path) -> dict:
        export_model(model, folder)
        return {
            "class_names": list(class_names),
            "input": spec.to_dict(),
            "threshold": 0.5,
            "output": {"activation": "softmax", "classes": len(class_names)},
            "metrics": {},
        }

    return ModelStore(models_dir).publish(name, write).version
