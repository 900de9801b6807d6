"""Seed an empty model store with the image's shipped models: python seed_models.py SRC DST

Run by the server pods' initContainer (deploy/k8s/base/deployment.yaml) with SRC=/models (the
image's own copy) and DST the shared volume. Idempotent and safe when pods start together:

- a version already in DST is never touched, and a model is seeded once: a marker file written
  when all its versions are in place stops later runs (a version deleted from the store on
  purpose does not come back), while a run cut short is completed by the next;
- each version is copied into a temporary folder next to its final place, then renamed into
  place, the way classifier.store publishes, so a server never sees a half-copied version;
- when two pods seed at once, the first rename wins and the other copy is dropped.

Standard library only: it runs before the server, with the image's Python.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

STAGING_PREFIX = ".seeding-"  # not a version number: servers and the store ignore it
MARKER = ".seeded"  # in DST/<model>/, written once every shipped version is in place


def versions(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=int)


def seed(source: Path, target: Path) -> list[str]:
    """Copy the versions of `source` missing from `target`, once per model; returns them."""
    copied = []
    for model in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
        destination = target / model.name
        if (destination / MARKER).exists():
            print(f"{model.name}: seeded before; the store has versions {versions(destination)}")
            continue
        destination.mkdir(parents=True, exist_ok=True)
        for version in versions(model):
            if (destination / version).exists():
                continue
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=destination))
            try:
                shutil.copytree(model / version, staging, dirs_exist_ok=True)
                staging.chmod(0o755)  # mkdtemp makes it private; the servers must read it
                os.rename(staging, destination / version)
            except OSError:
                if not (destination / version).is_dir():
                    raise
                print(f"{model.name} v{version}: seeded by another pod first")
                continue
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            copied.append(f"{model.name}/{version}")
            print(f"{model.name} v{version}: seeded")
        (destination / MARKER).touch()
    return copied


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    seed(Path(argv[0]), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
