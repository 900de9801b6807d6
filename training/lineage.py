"""What a version was trained and validated on: one line per photo, kept with the version.

    split   source   path   class   sha256

`source` is the data folder the photo came from (the training data's folder name, or an
extra folder's), `path` the photo's path inside it. A backslash, tab, line feed or carriage
return in a field is written as `\\`, `\t`, `\n` or `\r`, and a name that is not UTF-8 keeps
its bytes (surrogateescape): any file name stays on its own line, in its own field. The
manifest's SHA-256 is recorded in metadata.json (`training.data_manifest`), and it is what a
resumed run checks it trains on.
"""

from __future__ import annotations

import hashlib
import re
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


def both(train: Split, validation: Split) -> list[tuple[str, ...]]:
    """The manifest's rows: the training photos, then the validation photos."""
    return rows("train", train) + rows("validation", validation)


def manifest_rows(train: Split, validation: Split) -> list[dict[str, str]]:
    """The manifest these two splits would be published with, as `read_manifest` reads one."""
    return [dict(zip(HEADER, row)) for row in both(train, validation)]


ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
ESCAPED = re.compile(r"\\([\\tnr])")
UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def escape(field: str) -> str:
    return field.translate(str.maketrans(ESCAPES))


def unescape(field: str) -> str:
    return ESCAPED.sub(lambda m: UNESCAPES[m[1]], field)


def manifest_bytes(train: Split, validation: Split) -> bytes:
    lines = ["\t".join(HEADER)]
    lines += ["\t".join(map(escape, row)) for row in both(train, validation)]
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


def data_hash(train: Split, validation: Split) -> str:
    """The SHA-256 of the manifest of these two splits."""
    return hashlib.sha256(manifest_bytes(train, validation)).hexdigest()


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
    data = manifest_bytes(train, validation)
    (folder / MANIFEST_FILE).write_bytes(data)
    return {
        "file": MANIFEST_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "photos": len(train.labels) + len(validation.labels),
        "counts": {"train": source_counts(train), "validation": source_counts(validation)},
    }


def read_manifest(version_folder: Path) -> list[dict[str, str]] | None:
    """The manifest's rows as dicts, or None for a version published without one."""
    path = version_folder / MANIFEST_FILE
    if not path.is_file():
        return None
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    header, *lines = text.removesuffix("\n").split("\n")  # not splitlines: only \n ends a row
    keys = header.split("\t")
    try:
        return [dict(zip(keys, map(unescape, line.split("\t")), strict=True)) for line in lines]
    except ValueError:
        raise DatasetError(f"{path} is not a data manifest (a line without its 5 fields)") from None


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
