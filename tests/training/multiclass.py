"""A small generated dataset of three classes, told apart by colour, for C-class training."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import make_dataset

# Each class is noise with one colour channel raised; the names keep a space and an accent,
# as folder names may, and sort in this order.
CLASSES = {"blue sky": 2, "green": 1, "rouge été": 0}


def make_three_class_dataset(root: Path, per_class: int = 16, val_per_class: int = 6) -> Path:
    """DIR/train and DIR/validation with one folder per class in CLASSES."""
    return make_dataset(root, per_class, val_per_class, CLASSES, noise=110, lift=140)
