"""Which files a run covers, and reading them: an unreadable file is a result, not a crash."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from client.results import Failure, file_key

# The suffixes searched for in folders (the formats the service decodes); files named
# explicitly are sent whatever their suffix.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp"})


def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, and image files under folders (recursive, sorted, hidden ones skipped);
    each file once, in the order met. A path that does not exist is kept: it gets an error, as
    does a folder that cannot be listed."""
    found: dict[str, Path] = {}
    for item in map(Path, inputs):
        for path in _walk(item) if item.is_dir() else [item]:
            found.setdefault(file_key(str(path)), path)
    return list(found.values())


def _walk(folder: Path) -> list[Path]:
    paths = []

    def unlisted(exc: OSError) -> None:
        """A folder that cannot be listed is kept as a path: it gets an error record (its
        files would be left out without a word, and an unreadable folder be a success)."""
        paths.append(Path(exc.filename))

    for root, dirs, files in os.walk(folder, onerror=unlisted):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        paths.extend(
            Path(root, name)
            for name in sorted(files)
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        )
    return paths


def read_file(path: Path) -> bytes | Failure:
    """The file's bytes, or a Failure saying why they cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return Failure(str(path), "file_not_found", f"{path}: no such file")
    except IsADirectoryError:
        return Failure(str(path), "unreadable_file", f"{path}: is a folder")
    except OSError as exc:
        return Failure(str(path), "unreadable_file", f"{path}: {exc.strerror or exc}")
