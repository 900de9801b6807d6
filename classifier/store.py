"""The model store: `<root>/<name>/<version>/` folders, atomic publish, validation and load.

A version folder is only ever created by renaming a complete, fsynced temporary folder, and
a folder whose metadata is missing, invalid or whose checksums do not match is never loaded.
One file may be left out of a copy of a version: its Keras file, where the version has its ONNX
export (the serving image's copy, `python -m classifier.serving_copy`: ONNX Runtime and
OpenVINO read only model.onnx). Every other listed file must be there, and every file that is
there must match its checksum.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from classifier.durable import fsync, json_bytes, write_atomically, write_json
from classifier.errors import ModelStoreError
from classifier.filesystems import rename_refusal
from classifier.metadata import (
    METADATA_FILE,
    MODEL_FILE,
    ONNX_FILE,
    SCHEMA_VERSION,
    ModelMetadata,
)
from classifier.numbers import whole_number

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# The shipped model: the service's MODEL_NAME and the client's --local model by default.
DEFAULT_MODEL = "cats_vs_dogs"
# Where the store is when MODELS_DIR is not set: the `models` folder of the checkout these
# packages run from (a source tree or an editable install, as `make serve` makes), whatever
# the current directory; installed without a checkout (`pip install .`), `models` in the
# current directory. The service, `classify-images --local` and training all look there.
MODELS_DIR_VARIABLE = "MODELS_DIR"
DEFAULT_MODELS_FOLDER = "models"
_NAME_RE = re.compile(NAME_PATTERN)
# Up to 15 digits: TensorFlow Serving's exports are numbered by the time (10 digits, 13 in
# milliseconds), and every such number is exact in JSON read as a double (JavaScript).
_VERSION_RE = re.compile(r"^[1-9][0-9]{0,14}$")
TEMP_PREFIX = ".publishing-"
# A version whose files could not be read (EACCES, EIO), not one found wrong: what a reader
# that caches checks (service/loader.py) tries again, as the read may pass later.
UNREADABLE = "unreadable_version"
LAST_FILE = ".last-version"  # models/<name>/: the highest number published (last_published)
# Sections a published version's metadata.json may gain later: records about the version
# that change none of its files, so none of its answers (`ModelStore.amend`).
AMENDABLE = frozenset({"drift_reference"})


@dataclass(frozen=True)
class VersionStatus:
    """What the store knows about one version folder without loading the model."""

    version: int
    metadata: ModelMetadata | None
    error: str | None

    @property
    def valid(self) -> bool:
        return self.error is None


def validate_name(name: str) -> str:
    """Model names are plain folder names: no path separators, no leading dot."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ModelStoreError(
            f"invalid model name {name!r}: use letters, digits, '_', '.', '-' (max 64)",
            code="invalid_model_name",
        )
    return name


def checkout_root() -> Path | None:
    """The source checkout holding these packages, or None for an installed copy."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def default_models_dir() -> Path:
    """The model store when none is named: MODELS_DIR, else the checkout's `models` folder
    (absolute), else `models` in the current directory."""
    named = os.environ.get(MODELS_DIR_VARIABLE, "").strip()
    if named:
        return Path(named)
    root = checkout_root()
    return root / DEFAULT_MODELS_FOLDER if root else Path(DEFAULT_MODELS_FOLDER)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelStore:
    """Reads and writes versioned models under one root folder."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def model_dir(self, name: str) -> Path:
        return self.root / validate_name(name)

    def model_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME_RE.match(p.name))

    def last_published(self, name: str) -> int:
        """The highest number this store has published for `name` (0: none recorded): a
        number is never given twice, even after its folder was deleted, so a version number
        names one model in every log, metric and feedback record."""
        try:
            text = (self.model_dir(name) / LAST_FILE).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return 0
        return whole_number(text) or 0

    def next_version(self, name: str) -> int:
        """The number the next publish of `name` takes (if no other publisher is quicker).
        A file or link named as a number takes it as well: the rename onto it would fail."""
        folder = self.model_dir(name)
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        taken = [int(n) for n in names if _VERSION_RE.match(n)]
        return max([*taken, self.last_published(name)], default=0) + 1

    def versions(self, name: str) -> list[int]:
        """Version numbers present as folders, valid or not, ascending."""
        folder = self.model_dir(name)
        if not folder.is_dir():
            return []
        return sorted(
            int(p.name) for p in folder.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)
        )

    def fingerprint(self, name: str, version: int) -> tuple:
        """Names, sizes and modification times of a version's files: cheap change detection."""
        folder = self.model_dir(name) / str(version)
        try:
            paths = list(folder.iterdir())
        except OSError:
            return ()
        entries = []
        for path in paths:
            try:
                st = path.stat()
            except OSError:  # a dangling link: the link itself (it made the whole folder ())
                try:
                    st = path.lstat()
                except OSError:
                    continue
            entries.append((path.name, st.st_size, st.st_mtime_ns))
        return tuple(sorted(entries))

    def check(self, name: str, version: int) -> ModelMetadata:
        """Validate metadata and every file's checksum; raises ModelStoreError if anything is off."""
        folder = self.model_dir(name) / str(version)
        meta_path = folder / METADATA_FILE
        try:
            data = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelStoreError(
                f"{name} v{version}: no {METADATA_FILE}", code="incomplete_version"
            ) from None
        except OSError as exc:  # EACCES, EIO: may pass (unreadable_version is checked again)
            raise ModelStoreError(
                f"{name} v{version}: unreadable {METADATA_FILE}: {exc}", code="unreadable_version"
            ) from None
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            raise ModelStoreError(
                f"{name} v{version}: unreadable {METADATA_FILE}: {exc}", code="invalid_metadata"
            ) from None
        metadata = ModelMetadata.from_dict(data)
        if metadata.name != name or metadata.version != version:
            raise ModelStoreError(
                f"{name} v{version}: metadata names {metadata.name} v{metadata.version}",
                code="invalid_metadata",
            )
        for fname, expected in metadata.files.items():
            path = folder / fname
            try:
                actual = sha256_file(path)
            except FileNotFoundError:
                if fname == MODEL_FILE and ONNX_FILE in metadata.files:
                    continue  # a serving copy; model.onnx is checked in this loop as well
                raise ModelStoreError(
                    f"{name} v{version}: {fname} is missing", code="incomplete_version"
                ) from None
            except OSError as exc:
                raise ModelStoreError(
                    f"{name} v{version}: cannot read {fname}: {exc}", code="unreadable_version"
                ) from None
            if actual != expected:
                raise ModelStoreError(
                    f"{name} v{version}: checksum mismatch for {fname}", code="checksum_mismatch"
                )
        return metadata

    def scan(self, name: str) -> list[VersionStatus]:
        statuses = []
        for version in self.versions(name):
            try:
                statuses.append(VersionStatus(version, self.check(name, version), None))
            except ModelStoreError as exc:
                statuses.append(VersionStatus(version, None, exc.message))
        return statuses

    def latest_valid(self, name: str) -> ModelMetadata | None:
        for status in reversed(self.scan(name)):
            if status.metadata is not None:
                return status.metadata
        return None

    def refuse_other_classes(
        self,
        name: str,
        class_names: list[str] | tuple[str, ...],
        what: str = "this version",
        advice: str = "publish it under a new model name",
    ) -> None:
        """A model's classes, in order, are part of its identity: a version with others would
        change every answer under its users. Raises ModelStoreError (class_mismatch)."""
        newest = self.latest_valid(name)
        if newest is not None and tuple(class_names) != newest.class_names:
            raise ModelStoreError(
                f"model {name!r} has classes {list(newest.class_names)} (v{newest.version} in "
                f"{self.root}), {what} has {list(class_names)}: {advice}",
                code="class_mismatch",
            )

    def check_publishable(self, name: str) -> None:
        """Whether this process could publish a version of `name` now (training asks before
        its hour of work), leaving nothing behind. Raises OSError (not a folder, not
        writable) or ModelStoreError (unsafe_store)."""
        folder = Path(os.path.abspath(self.model_dir(name)))  # no "..": what is made is listed
        created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
        try:
            os.rmdir(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=_publish_folder(folder)))
        finally:
            for path in created:
                with contextlib.suppress(OSError):
                    path.rmdir()

    def publish(self, name: str, write: Callable[[Path], dict]) -> ModelMetadata:
        """Publish a new version atomically and return its metadata.

        `write(folder)` writes the model file (and any extras) into a temporary folder and
        returns the metadata fields it knows; the store adds name, version, checksums and
        time, fsyncs everything, then renames the folder to the next free version number.
        """
        folder = _publish_folder(self.model_dir(name))
        staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=folder))
        try:
            staging.chmod(0o755)  # mkdtemp makes it private; other readers (the API) need it
            fields = write(staging)
            if "class_names" in fields:
                self.refuse_other_classes(name, fields["class_names"])
            if not (staging / MODEL_FILE).is_file():
                raise ModelStoreError(f"publish wrote no {MODEL_FILE}", code="incomplete_version")
            files = {
                p.name: sha256_file(p)
                for p in sorted(staging.iterdir())
                if p.is_file() and p.name != METADATA_FILE
            }
            for path in staging.iterdir():
                fsync(path)
            created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            while True:
                version = self.next_version(name)
                if not _VERSION_RE.match(str(version)):  # a folder the store would not list
                    raise ModelStoreError(
                        f"model {name!r} has no version number left ({version})",
                        code="unsafe_store",
                    )
                metadata = {
                    **fields,
                    "schema_version": SCHEMA_VERSION,
                    "name": name,
                    "version": version,
                    "files": files,
                    "created_at": created,
                }
                ModelMetadata.from_dict(metadata)  # never publish what could not be loaded
                write_json(staging / METADATA_FILE, metadata)
                fsync(staging)
                try:
                    os.rename(staging, folder / str(version))
                except OSError:
                    if (folder / str(version)).exists():
                        continue  # another publisher took this number; take the next
                    raise
                try:
                    fsync(folder)
                except BaseException:  # not durable, so not published: take it back
                    with contextlib.suppress(OSError):
                        os.rename(folder / str(version), staging)
                    raise
                highest = max(version, self.last_published(name))  # another may be ahead
                with contextlib.suppress(OSError):  # published: the record is only a guard
                    write_atomically(
                        folder / LAST_FILE, f"{highest}\n".encode(), prefix=f"{LAST_FILE}-"
                    )
                return ModelMetadata.from_dict(metadata)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def amend(self, name: str, version: int, sections: dict) -> ModelMetadata:
        """Add or replace `sections` (only those in AMENDABLE) of a published version's
        metadata.json, atomically: the version is checked first (checksums), the new metadata
        validated, written to a temporary file beside it, fsynced and renamed over it.

        metadata.json is not among `files` (it holds their checksums): its model, classes and
        files stay as they were, so the version answers exactly as before; the store checks
        the new metadata as it checks any. A server that loaded the version keeps running it
        and reads the new sections from its next scan of the store."""
        refused = sorted(set(sections) - AMENDABLE)
        if refused:
            raise ModelStoreError(
                f"metadata sections {refused} cannot change after publishing (amendable: "
                f"{sorted(AMENDABLE)})",
                code="invalid_metadata",
            )
        self.check(name, version)
        folder = self.model_dir(name) / str(version)
        refusal = rename_refusal(folder)
        if refusal:
            raise ModelStoreError(refusal, code="unsafe_store")
        data = {**json.loads((folder / METADATA_FILE).read_text(encoding="utf-8")), **sections}
        ModelMetadata.from_dict(data)  # never write what could not be loaded
        write_atomically(folder / METADATA_FILE, json_bytes(data), prefix=f".{METADATA_FILE}-")
        return ModelMetadata.from_dict(data)


def _publish_folder(folder: Path) -> Path:
    """models/<name>/, made if need be, once renames there are known to be atomic."""
    folder.mkdir(parents=True, exist_ok=True)
    refusal = rename_refusal(folder)
    if refusal:
        raise ModelStoreError(refusal, code="unsafe_store")
    return folder
