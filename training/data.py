"""Load a class-folder dataset through the shared preprocessing function, once, into memory."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from classifier.errors import ClassifierError, ImageError
from classifier.preprocess import decode_image
from classifier.spec import InputSpec


class DatasetError(ClassifierError):
    code = "invalid_dataset"


@dataclass
class Split:
    """Decoded images (n, h, w, 3) uint8 with labels 0/1 in `class_names` order."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.class_names)}


def find_classes(split_dir: Path) -> list[str]:
    """Class names are the sub-folder names, sorted; exactly two are required."""
    if not split_dir.is_dir():
        raise DatasetError(f"no such folder: {split_dir}")
    names = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) != 2:
        raise DatasetError(
            f"{split_dir} must hold exactly two class folders; found {len(names)}: {names}"
        )
    return names


def held_out_dir(data_dir: Path) -> Path:
    """The split a model is judged on: DIR/test when there is one, else DIR/validation."""
    test = data_dir / "test"
    return test if test.is_dir() else data_dir / "validation"


def load_split(
    split_dir: Path,
    spec: InputSpec,
    class_names: list[str] | None = None,
    *,
    progress: bool = True,
) -> Split:
    """Decode every file under `split_dir/<class>/`; unreadable files are listed and skipped."""
    found = find_classes(split_dir)
    if class_names is not None and found != list(class_names):
        raise DatasetError(f"{split_dir} has classes {found}, expected {list(class_names)}")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(found):
        for path in sorted((split_dir / name).iterdir()):
            if path.is_file() and not path.name.startswith("."):
                files.append((path, label))
    if not files:
        raise DatasetError(f"{split_dir} holds no image files")

    def decode(item: tuple[Path, int]) -> np.ndarray | str:
        try:
            return decode_image(item[0].read_bytes(), spec)
        except ImageError as exc:
            return f"{exc.code}: {exc.message}"
        except OSError as exc:
            return f"unreadable: {exc}"

    images, labels, skipped = [], [], []
    bar = _progress(len(files), f"decoding {split_dir.name}") if progress else None
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for i, ((path, label), result) in enumerate(zip(files, pool.map(decode, files)), 1):
            if isinstance(result, str):
                skipped.append((str(path.relative_to(split_dir)), result))
            else:
                images.append(result)
                labels.append(label)
            if bar is not None and (i % 100 == 0 or i == len(files)):
                bar.update(i)
    for path, reason in skipped:
        print(f"skipped {split_dir.name}/{path}: {reason}", file=sys.stderr)
    if not images:
        raise DatasetError(f"no readable image in {split_dir}")
    return Split(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.float32),
        class_names=found,
        skipped=skipped,
    )


def _progress(total: int, title: str):
    from keras.utils import Progbar

    print(title, file=sys.stderr)
    return Progbar(total, verbose=1 if sys.stderr.isatty() else 2, unit_name="image")


def training_dataset(split: Split, batch_size: int, seed: int):
    """Batches of the decoded images in a new order each epoch, prepared ahead of the model.

    The images were decoded once (load_split) and stay in memory; augmentation runs inside
    the model, so nothing here touches a file or Pillow again.
    """
    import tensorflow as tf

    return (
        tf.data.Dataset.from_tensor_slices((split.images, split.labels))
        .shuffle(len(split.labels), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
