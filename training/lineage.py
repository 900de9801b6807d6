"""What a version was trained and validated on: one line per photo, kept with the version.

    split   source   path   class   sha256

`source` is the data folder the photo came from (the training data's folder name, or an
extra folder's), `path` the photo's path inside it. The manifest's SHA-256 is recorded in
metadata.json (`training.data_manifest`), and it is what a resumed run checks it trains on.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from training.data import DatasetError, Split

MANIFEST_FILE = "data_manifest.tsv"
HEADER = ("split", "source", "path", "class", "sha256")


def rows(split_name: str, split: Split) -> list[tuple[str, ...]]:
    """One row per photo of `split` (loaded by data.load_split), in its order."""
    return [
        (split_name, f.source, f.path, split.class_names[int(label)], f.sha256)
        for f, label in zip(split.files, split.labels, strict=True)
    ]


def manifest_text(train: Split, validation: Split) -> str:
    lines = ["\t".join(HEADER)]
    lines += ["\t".join(row) for row in rows("train", train) + rows("validation", validation)]
    return "\n".join(lines) + "\n"


def data_hash(train: Split, validation: Split) -> str:
    """The SHA-256 of the manifest of these two splits."""
    return hashlib.sha256(manifest_text(train, validation).encode()).hexdigest()


def source_counts(split: Split) -> dict[str, dict[str, int]]:
    """Photos per source, then per class: how many came from the data folder and how many
    from each extra folder (feedback)."""
    counts: dict[str, Counter] = {}
    for photo, label in zip(split.files, split.labels, strict=True):
        counts.setdefault(photo.source, Counter())[split.class_names[int(label)]] += 1
    return {source: dict(sorted(c.items())) for source, c in counts.items()}


def write_manifest(folder: Path, train: Split, validation: Split) -> dict:
    """Write the manifest into a version folder; returns its metadata record (file, hash and
    counts per split, source and class)."""
    text = manifest_text(train, validation)
    (folder / MANIFEST_FILE).write_text(text, encoding="utf-8")
    return {
        "file": MANIFEST_FILE,
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "photos": len(train.labels) + len(validation.labels),
        "counts": {"train": source_counts(train), "validation": source_counts(validation)},
    }


def read_manifest(version_folder: Path) -> list[dict[str, str]] | None:
    """The manifest's rows as dicts, or None for a version published without one."""
    path = version_folder / MANIFEST_FILE
    if not path.is_file():
        return None
    header, *lines = path.read_text(encoding="utf-8").splitlines()
    keys = header.split("\t")
    return [dict(zip(keys, line.split("\t"), strict=True)) for line in lines]


def refuse_trained_on(split: Split, manifest: list[dict[str, str]] | None, model: str) -> None:
    """Refuse to score `model` on photos it was trained on: its figures would not say how it
    does on photos it has not seen."""
    if not manifest:
        return
    trained = {row["sha256"] for row in manifest if row["split"] == "train"}
    seen = [f.path for f in split.files if f.sha256 in trained]
    if seen:
        raise DatasetError(
            f"{len(seen)} of the {len(split.files)} photos in {split.where} are in the training "
            f"data of {model} (e.g. {seen[0]}): its scores on them would say nothing of photos "
            "it has not seen; score it on photos it was not trained on"
        )
