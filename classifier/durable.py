"""Writing files that survive a crash: fsync a file or a folder, write JSON fsynced.

A file or folder renamed into place is only durable once its contents and then the folder
holding the new name are fsynced; the store's publish, training's checkpoints and the
service's feedback all follow that order.
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


def write_json(path: Path, data: dict) -> None:
    """`data` as indented JSON with sorted keys and a final newline, fsynced."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
