"""Writing files that survive a crash: fsync a file or a folder, make folders whose entries
are fsynced, write a file whole or not at all, write JSON fsynced.

A file or folder renamed into place (or created) is only durable once its contents and then
the folder holding the new name are fsynced; the store's publish and amend, training's
checkpoints and the service's feedback and captures all follow that order.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

TEMP_PREFIX = ".tmp-"  # hidden: class-folder readers (training.data) never see one


def fsync(path: Path) -> None:
    """Flush a file's contents, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """`mkdir -p`, durably: each folder made is fsynced in its parent (a photo fsynced into a
    folder made a moment before would otherwise vanish with it in a crash)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:  # made meanwhile (another writer), or a file: said below
            if not folder.is_dir():
                raise
        fsync(folder.parent)


def write_atomically(
    path: Path, data: bytes, *, durable: bool = True, prefix: str = TEMP_PREFIX
) -> None:
    """Write `data` as `path`: into a hidden temporary file (`prefix`) in the same folder,
    then renamed over it, so a reader sees the whole file or none. `durable`: the file and the
    folder entry are fsynced before this returns (they survive a crash)."""
    handle, temp = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes it private; readers may run as another user
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    if durable:
        fsync(path.parent)


def json_bytes(data: dict) -> bytes:
    """`data` as indented JSON with sorted keys and a final newline."""
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def write_json(path: Path, data: dict) -> None:
    """`data` as `json_bytes`, fsynced."""
    with open(path, "wb") as handle:
        handle.write(json_bytes(data))
        handle.flush()
        os.fsync(handle.fileno())
