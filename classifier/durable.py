"""Writing files that survive a crash: fsync a file or a folder, make folders whose entries
are fsynced, write JSON fsynced.

A file or folder renamed into place (or created) is only durable once its contents and then
the folder holding the new name are fsynced; the store's publish, training's checkpoints and
the service's feedback all follow that order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


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


def write_json(path: Path, data: dict) -> None:
    """`data` as indented JSON with sorted keys and a final newline, fsynced."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
