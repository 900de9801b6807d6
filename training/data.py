"""Load a class-folder dataset through the shared preprocessing function, once, into memory.

A split is a folder of class folders: the class names are the folder names as they are
(spaces, accents and any script kept), sorted, and that order is the model's output order.
"""

from __future__ import annotations

import hashlib
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


@dataclass(frozen=True)
class PhotoFile:
    """Where a photo came from: its data folder (`source`), its path there, its SHA-256."""

    source: str
    path: str
    sha256: str


@dataclass
class Split:
    """Decoded images (n, h, w, 3) uint8 with labels 0..C-1 (float32) in `class_names` order,
    and for each image the file it came from; `where` names the split in messages."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    files: list[PhotoFile] = field(default_factory=list)
    where: str = ""

    def without(self, sha256s: set[str]) -> tuple[Split, int]:
        """This split less the photos whose SHA-256 is in `sha256s`, and how many left."""
        keep = [i for i, f in enumerate(self.files) if f.sha256 not in sha256s]
        if len(keep) == len(self.files):
            return self, 0
        kept = Split(
            images=self.images[keep],
            labels=self.labels[keep],
            class_names=self.class_names,
            skipped=self.skipped,
            files=[self.files[i] for i in keep],
            where=self.where,
        )
        return kept, len(self.files) - len(keep)

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.class_names)}

    @classmethod
    def concat(cls, parts: list[Split]) -> Split:
        """One split of several with the same classes (the training data and extra folders)."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            images=np.concatenate([p.images for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            class_names=parts[0].class_names,
            skipped=[s for p in parts for s in p.skipped],
            files=[f for p in parts for f in p.files],
            where=" + ".join(p.where for p in parts),
        )


def find_classes(split_dir: Path) -> list[str]:
    """Class names are the sub-folder names, sorted; at least two are required."""
    if not split_dir.is_dir():
        raise DatasetError(f"no such folder: {split_dir}")
    names = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) < 2:
        raise DatasetError(
            f"{split_dir} must hold at least two class folders (one per class); "
            f"found {len(names)}: {names}"
        )
    return names


def check_same_classes(split_dir: Path, found: list[str], expected: list[str], of: str) -> None:
    """Refuse a split whose class folders are not `expected` (those of `of`), naming the
    difference."""
    if found == list(expected):
        return
    missing = [n for n in expected if n not in found]
    extra = [n for n in found if n not in expected]
    differences = "; ".join(
        ([f"missing {missing}"] if missing else []) + ([f"not in {of}: {extra}"] if extra else [])
    )
    raise DatasetError(
        f"{split_dir} has classes {found}, {of} has {list(expected)} ({differences})"
    )


def image_files(class_dir: Path) -> list[Path]:
    """The files of one class folder, sorted (hidden files left out)."""
    return sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith("."))


def check_split(
    split_dir: Path,
    class_names: list[str] | None = None,
    of: str = "train",
    *,
    every_class: bool = True,
) -> list[str]:
    """The class names of `split_dir`, refusing a split a model cannot be trained or scored
    on: a missing folder, fewer than two classes, classes other than `class_names` (those of
    `of`), or an empty class folder (unless not `every_class`: scoring on photos of some of
    the classes only). Reads names only; nothing is decoded."""
    found = find_classes(split_dir)
    if class_names is not None:
        check_same_classes(split_dir, found, class_names, of)
    empty = [name for name in found if not image_files(split_dir / name)]
    if empty and every_class:
        raise DatasetError(
            f"{split_dir} has empty class folders: {empty}; every class needs images"
        )
    return found


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
    of: str = "train",
    every_class: bool = True,
) -> Split:
    """Decode every file under `split_dir/<class>/`; unreadable files are listed and skipped,
    a class left with no readable image is refused (with `every_class`; else only a split
    with none at all). Files are recorded as from the data folder above `split_dir`."""
    found = check_split(split_dir, class_names, of, every_class=every_class)
    origin = (split_dir.parent.name, f"{split_dir.name}/")
    return _load(split_dir, found, found, spec, origin, progress, every_class)


def check_extra(folder: Path, class_names: list[str]) -> list[str]:
    """The class folders of an extra training folder (labelled feedback) that hold photos:
    some of the model's classes; refused when it names another class or is not a folder. A
    folder with no photo yet, or none at all yet (a scheduled retrain before any feedback
    came in: the service makes it on the first), adds nothing: []."""
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [name for name in found if name not in class_names]
    if unknown:
        raise DatasetError(
            f"{folder} has class folders {unknown} that are not among the model's classes "
            f"{class_names}"
        )
    return [name for name in found if image_files(folder / name)]


def load_extra(
    folder: Path, spec: InputSpec, class_names: list[str], progress: bool = True
) -> Split | None:
    """Photos to add to training from an extra folder (see check_extra); None when it holds
    none yet (said on stderr)."""
    found = check_extra(folder, class_names)
    if not found:
        print(f"{folder} holds no photo (yet): nothing added from it", file=sys.stderr)
        return None
    origin = (f"{folder.parent.name}/{folder.name}", "")
    return _load(folder, found, class_names, spec, origin, progress, every_class=False)


def file_hashes(split_dir: Path) -> set[str]:
    """The SHA-256 of every file in a split's class folders (read, not decoded)."""
    if not split_dir.is_dir():
        return set()
    return {
        hashlib.sha256(path.read_bytes()).hexdigest()
        for class_dir in split_dir.iterdir()
        if class_dir.is_dir() and not class_dir.name.startswith(".")
        for path in image_files(class_dir)
    }


def _load(
    root: Path,
    folders: list[str],
    class_names: list[str],
    spec: InputSpec,
    origin: tuple[str, str],
    progress: bool,
    every_class: bool,
) -> Split:
    """Decode `root/<folder>/*` for each class folder, labelled by its place in
    `class_names`; `origin` is the source the files are recorded under and their path prefix."""
    files: list[tuple[Path, int]] = [
        (path, class_names.index(name)) for name in folders for path in image_files(root / name)
    ]

    def decode(item: tuple[Path, int]) -> tuple[np.ndarray, str] | str:
        try:
            data = item[0].read_bytes()
            return decode_image(data, spec), hashlib.sha256(data).hexdigest()
        except ImageError as exc:
            return f"{exc.code}: {exc.message}"
        except OSError as exc:
            return f"unreadable: {exc}"

    source, prefix = origin
    images, labels, skipped, records = [], [], [], []
    bar = _progress(len(files), f"decoding {root.name}") if progress else None
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for i, ((path, label), result) in enumerate(zip(files, pool.map(decode, files)), 1):
            relative = path.relative_to(root).as_posix()
            if isinstance(result, str):
                skipped.append((relative, result))
            else:
                images.append(result[0])
                labels.append(label)
                records.append(PhotoFile(source, prefix + relative, result[1]))
            if bar is not None and (i % 100 == 0 or i == len(files)):
                bar.update(i)
    for path, reason in skipped:
        print(f"skipped {root.name}/{path}: {reason}", file=sys.stderr)
    present = set(labels)
    unreadable = [name for name in folders if class_names.index(name) not in present]
    if not images:
        raise DatasetError(f"no readable image in {root} ({len(skipped)} files skipped)")
    if unreadable and every_class:
        raise DatasetError(
            f"no readable image in {', '.join(str(root / n) for n in unreadable)} "
            f"({len(skipped)} files skipped, listed above); every class needs images"
        )
    return Split(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.float32),
        class_names=list(class_names),
        skipped=skipped,
        files=records,
        where=f"{source}/{prefix}".rstrip("/"),
    )


def _progress(total: int, title: str):
    from keras.utils import Progbar

    print(title, file=sys.stderr)
    return Progbar(total, verbose=1 if sys.stderr.isatty() else 2, unit_name="image")


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the images in one epoch: a function of the seed and the epoch alone, so
    a resumed run sees exactly the batches an uninterrupted one would have."""
    return np.random.default_rng([seed, epoch]).permutation(count)


class EpochBatches:
    """Batches of the decoded images, in `epoch_order`, prepared ahead of the model.

    The images were decoded once (load_split) and stay in memory (held once by TensorFlow);
    augmentation runs inside the model, so nothing here touches a file or Pillow again.
    """

    def __init__(self, split: Split, batch_size: int, seed: int) -> None:
        import tensorflow as tf

        self.tf = tf
        self.images = tf.constant(split.images)
        self.labels = tf.constant(split.labels)
        self.batch_size, self.seed = batch_size, seed

    def __call__(self, epoch: int):
        tf = self.tf
        order = epoch_order(len(self.labels), self.seed, epoch)
        return (
            tf.data.Dataset.from_tensor_slices(order)
            .batch(self.batch_size)
            .map(lambda i: (tf.gather(self.images, i), tf.gather(self.labels, i)))
            .prefetch(tf.data.AUTOTUNE)
        )
