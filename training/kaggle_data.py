"""Build the full cats-vs-dogs training folder from a snapshot of Kaggle's training set.

    python -m training.kaggle_data --snapshot SNAPSHOT_GIT_DIR --out ../cats_vs_dogs_full

The snapshot is a git repository holding Kaggle's "Dogs vs. Cats" training set as
`train/cat.N.jpg` and `train/dog.N.jpg`, N = 0..12499 (the public repository
4GeeksAcademy/Deep-Learning-CarlosFS: its copies are resized to 200x200, same photo for the
same number as ../shared/data/cats_vs_dogs). It is read with git itself (no work tree). The
output is a class-folder data set:

    OUT/train/{cats,dogs}/      numbers 0-4000 and 5001-12499 from the snapshot
    OUT/validation/{cats,dogs}/ a copy of --validation (numbers 4001-4500, full size)
    OUT/build.json              source commit, counts, and every file left out and why

Numbers 4501-5000 are reserved for independent evaluation: their names are filtered out
before any content is read, so this never reads them. Left out of train are exact duplicates
(same bytes: the lowest number is kept; a pair across the two classes loses both) and any
photo whose pixels match a validation photo (a leak into the figures training reports), and
any that is not a readable JPEG or PNG.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.cli import EPILOG, reports_errors
from training.data import DatasetError, image_files

CLASSES = {"cat": "cats", "dog": "dogs"}
TRAIN_NUMBERS = (range(0, 4001), range(5001, 12500))
RESERVED = range(4501, 5001)  # independent evaluation: never read
NAME = re.compile(r"^(cat|dog)\.(0|[1-9][0-9]*)\.jpg$")  # Kaggle's names: no leading zeros
THUMB = 16  # side of the grey thumbnails compared to find validation photos in train
# Mean absolute difference (0-255) under which two thumbnails are the same photo. The same
# photo, full size vs the snapshot's 200x200 copy, measured at most 3.7 (99% under 2.5) on
# numbers 4001-4500; a validation photo's nearest other photo there, 13.7 or more.
SAME_PHOTO = 6.0


@dataclass(frozen=True)
class Entry:
    kind: str  # "cat" or "dog"
    number: int
    blob: str  # git object id

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.number}.jpg"

    @property
    def class_name(self) -> str:
        return CLASSES[self.kind]


def wanted(number: int) -> bool:
    return any(number in r for r in TRAIN_NUMBERS) and number not in RESERVED


def list_snapshot(git_dir: Path, ref: str, folder: str) -> list[Entry]:
    """The training photos the snapshot holds, by name only (nothing read yet)."""
    out = _git(git_dir, "ls-tree", "-z", f"{ref}:{folder}").decode()
    entries = []
    for record in filter(None, out.split("\0")):
        meta, name = record.split("\t", 1)
        match = NAME.match(name)
        if match and meta.split()[1] == "blob" and wanted(int(match[2])):
            entries.append(Entry(match[1], int(match[2]), meta.split()[2]))
    return sorted(entries, key=lambda e: (e.kind, e.number))


def read_blobs(git_dir: Path, entries: list[Entry]) -> dict[str, bytes]:
    """The contents of `entries`, through one `git cat-file --batch`."""
    request = "".join(f"{e.blob}\n" for e in entries).encode()
    out = _git(git_dir, "cat-file", "--batch", stdin=request)
    blobs, missing, at = {}, set(), 0
    while at < len(out):
        header_end = out.index(b"\n", at)
        fields = out[at:header_end].decode().split()
        at = header_end + 1
        if len(fields) != 3:  # `<oid> missing`: named by the tree, its object not in the copy
            missing.add(fields[0])
            continue
        oid, _, size = fields
        blobs[oid] = out[at : at + int(size)]
        at += int(size) + 1
    if missing:
        names = [e.name for e in entries if e.blob in missing]
        raise DatasetError(
            f"{git_dir} lists {len(names)} photos whose contents it does not hold (e.g. "
            f"{names[0]}): a partial or damaged copy; fetch or clone the snapshot whole"
        )
    return blobs


def thumbnail(data: bytes) -> np.ndarray:
    """A 16x16 grey thumbnail as float32: enough to tell the same photo at any size."""
    with Image.open(io.BytesIO(data), formats=["JPEG", "PNG"]) as im:
        im.draft("L", (THUMB * 4, THUMB * 4))
        return np.asarray(
            im.convert("L").resize((THUMB, THUMB), Image.Resampling.BILINEAR), dtype=np.float32
        ).reshape(-1)


UNREADABLE = (OSError, ValueError, Image.DecompressionBombError)  # what Pillow raises on bad bytes


def validation_thumbnail(path: Path) -> np.ndarray:
    """A validation photo's thumbnail; a photo that cannot be read is refused by name."""
    try:
        return thumbnail(path.read_bytes())
    except UNREADABLE:
        raise DatasetError(f"{path} is not a readable JPEG or PNG") from None


def exact_duplicates(entries: list[Entry], blobs: dict[str, bytes]) -> dict[str, str]:
    """Files to leave out, by name, with why: same bytes as a kept one, or as one of the
    other class (then neither is kept)."""
    groups: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        groups[hashlib.sha256(blobs[e.blob]).hexdigest()].append(e)
    dropped = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        if len({e.kind for e in group}) > 1:
            for e in group:
                others = ", ".join(o.name for o in group if o is not e)
                dropped[e.name] = f"same bytes as {others}, of the other class"
        else:
            keep, *rest = sorted(group, key=lambda e: e.number)
            for e in rest:
                dropped[e.name] = f"same bytes as {keep.name}"
    return dropped


def validation_matches(
    entries: list[Entry], blobs: dict[str, bytes], validation: Path
) -> dict[str, str]:
    """Training photos whose thumbnails match a validation photo's."""
    val_files = [p for name in CLASSES.values() for p in image_files(validation / name)]
    val = np.stack([validation_thumbnail(p) for p in val_files])
    dropped = {}
    for i in range(0, len(entries), 256):  # 256 x 1,000 x 256 differences: 256 MiB at a time
        chunk, thumbs = [], []
        for e in entries[i : i + 256]:
            try:
                thumbs.append(thumbnail(blobs[e.blob]))
                chunk.append(e)
            except UNREADABLE:
                dropped[e.name] = "not a readable JPEG or PNG"
        if not chunk:
            continue
        train = np.stack(thumbs)
        distance = np.abs(train[:, None, :] - val[None, :, :]).mean(axis=2)
        nearest = distance.argmin(axis=1)
        for e, j, d in zip(chunk, nearest, distance[np.arange(len(chunk)), nearest]):
            if d < SAME_PHOTO:
                dropped[e.name] = f"same photo as validation/{val_files[j].parent.name}/" + (
                    f"{val_files[j].name} (thumbnail difference {d:.2f})"
                )
    return dropped


def build(snapshot: Path, validation: Path, out: Path, ref: str = "HEAD", folder: str = "train"):
    """Write OUT/train, OUT/validation and OUT/build.json; returns the build record."""
    for name in CLASSES.values():
        if not (validation / name).is_dir():
            raise DatasetError(f"{validation} must hold {', '.join(CLASSES.values())}/")
        if not image_files(validation / name):
            raise DatasetError(f"{validation / name} holds no photo")
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} exists and is not empty: choose a new --out")
    commit = _git(snapshot, "rev-parse", ref).decode().strip()
    entries = list_snapshot(snapshot, commit, folder)
    if not entries:
        raise DatasetError(f"no cat.N.jpg or dog.N.jpg under {folder}/ in {snapshot} at {ref}")
    print(f"reading {len(entries)} photos from {snapshot} at {commit[:12]}", file=sys.stderr)
    blobs = read_blobs(snapshot, entries)
    dropped = exact_duplicates(entries, blobs)
    kept = [e for e in entries if e.name not in dropped]
    print("comparing with the validation photos", file=sys.stderr)
    dropped |= validation_matches(kept, blobs, validation)
    counts: dict[str, int] = defaultdict(int)
    for e in entries:
        if e.name in dropped:
            continue
        target = out / "train" / e.class_name / e.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blobs[e.blob])
        counts[e.class_name] += 1
    shutil.copytree(validation, out / "validation")
    record = {
        "source": {"snapshot": str(snapshot.name), "commit": commit, "folder": folder},
        "train_numbers": [[r.start, r.stop - 1] for r in TRAIN_NUMBERS],
        "never_read": [RESERVED.start, RESERVED.stop - 1],
        "validation": str(validation),
        "counts": {"train": dict(sorted(counts.items()))},
        "dropped": dict(sorted(dropped.items())),
    }
    (out / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _git(git_dir: Path, *args: str, stdin: bytes | None = None) -> bytes:
    try:
        return subprocess.run(
            ["git", f"--git-dir={git_dir}", *args], input=stdin, capture_output=True, check=True
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise DatasetError(f"git {args[0]} in {git_dir}: {exc.stderr.decode().strip()}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.kaggle_data", description=__doc__.split("\n\n")[0], epilog=EPILOG
    )
    p.add_argument(
        "--snapshot", type=Path, required=True, help="git directory of the snapshot (bare is fine)"
    )
    p.add_argument(
        "--validation",
        type=Path,
        default=Path("../shared/data/cats_vs_dogs/validation"),
        help="validation photos (cats/, dogs/) to copy, and to keep out of train",
    )
    p.add_argument("--out", type=Path, required=True, help="new folder to write")
    p.add_argument("--ref", default="HEAD", help="commit of the snapshot to read")
    p.add_argument("--folder", default="train", help="folder of the photos in the snapshot")
    return p


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    record = build(args.snapshot, args.validation, args.out, args.ref, args.folder)
    print(
        f"wrote {args.out}: train {record['counts']['train']}, "
        f"{len(record['dropped'])} left out (listed in {args.out / 'build.json'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
