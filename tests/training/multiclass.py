"""A small generated dataset of three classes, told apart by colour, for C-class training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Each class is noise with one colour channel raised; the names keep a space and an accent,
# as folder names may, and sort in this order.
CLASSES = {"blue sky": 2, "green": 1, "rouge été": 0}


def make_three_class_dataset(root: Path, per_class: int = 16, val_per_class: int = 6) -> Path:
    """DIR/train and DIR/validation with one folder per class in CLASSES."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("validation", val_per_class)):
        for label, channel in CLASSES.items():
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = rng.integers(50, 90, size=2)
                pixels = rng.integers(0, 110, (h, w, 3), dtype=np.uint8)
                pixels[..., channel] += 140
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    return root
