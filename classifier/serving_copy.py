"""A model store's serving copy: python -m classifier.serving_copy [--versions all] SOURCE TARGET

Serving on the CPU (ONNX Runtime or OpenVINO) reads a version's model.onnx; its Keras file is
the trainer's (13 MB a version). The serving image (Dockerfile, target `serve`) ships this copy:
every valid version of each model that has a model.onnx (the default, `--versions all`), or
with `--versions newest` (the image's default, its SERVE_VERSIONS) only the newest one, what
the default version policy, `latest`, serves; with all their files but model.keras. Each copied
version is then checked as the store checks what it serves (classifier.store: a copy may leave
out model.keras where model.onnx is listed; every file there must match its checksum), so an
image never ships a copy that its own store would refuse. Versions without model.onnx cannot
be served without TensorFlow and are left out.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from classifier.errors import ModelStoreError
from classifier.metadata import MODEL_FILE, ONNX_FILE
from classifier.store import ModelStore


def copy_for_serving(source: Path, target: Path, versions: str = "all") -> list[str]:
    """Copy the servable versions of every model in `source` into `target` (which must not
    hold them yet): all of them, or with `versions="newest"` the newest of each model;
    returns "name/version" for each. Raises ModelStoreError if none is."""
    store, copy = ModelStore(source), ModelStore(target)
    copied = []
    for name in store.model_names():
        servable = [
            status
            for status in store.scan(name)
            if status.metadata is not None and ONNX_FILE in status.metadata.files
        ]
        for status in servable[-1:] if versions == "newest" else servable:
            shutil.copytree(
                store.model_dir(name) / str(status.version),
                copy.model_dir(name) / str(status.version),
                ignore=shutil.ignore_patterns(MODEL_FILE),
            )
            copy.check(name, status.version)
            copied.append(f"{name}/{status.version}")
    if not copied:
        raise ModelStoreError(
            f"no valid version with a {ONNX_FILE} in {source}", code="model_not_found"
        )
    return copied


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m classifier.serving_copy", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument("source", type=Path, help="the model store to copy from")
    parser.add_argument("target", type=Path, help="where the copy goes (a new folder)")
    parser.add_argument(
        "--versions",
        choices=("newest", "all"),
        default="all",
        help="the newest servable version of each model, or every one (default: all)",
    )
    args = parser.parse_args(argv)
    try:
        copied = copy_for_serving(args.source, args.target, args.versions)
    except ModelStoreError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    except FileExistsError as exc:  # a rerun into the same TARGET
        print(f"{exc.filename} exists: the copy goes into a new TARGET", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot copy into {args.target}: {exc}", file=sys.stderr)
        return 1
    print(f"serving copy in {args.target}: {', '.join(copied)} (without {MODEL_FILE})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
