"""Captured requests: a sample of the images the service answered, kept for labelling.

    FEEDBACK_DIR/.captured/<model>/images/<sha256>.<ext>        the image, content-addressed
    FEEDBACK_DIR/.captured/<model>/requests/<key>.json          one per captured image: its
                                                                request id and index, version,
                                                                answer and time
    FEEDBACK_DIR/.captured/<model>/requests/<key>.labelled.json  the same, once labelled

`<key>` is a hash of the request id and the image's index in the request (a client's request
id never becomes a path). The folder is hidden: a trainer reading FEEDBACK_DIR/<model> as
class folders never sees it. Every file is written whole (temporary file, then rename) but
not fsynced: captures are samples, and a crash may lose the last few. Every worker writes here
and sweeps: the files go oldest first (an image's time is that of its newest capture, and a
request goes before its image) until they take at most CAPTURE_MAX_BYTES, and any older than
CAPTURE_MAX_AGE_HOURS goes. A capture whose image was swept is gone (not found).
No Flask here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from classifier.durable import TEMP_PREFIX, write_atomically
from service import photos

log = logging.getLogger(__name__)

CAPTURED = ".captured"
LABELLED = ".labelled.json"
STALE_TEMP_S = 3600.0
IMAGE_NAME = re.compile(rf"^[0-9a-f]{{64}}\.({'|'.join(photos.MEDIA_TYPES)})$")  # <sha256>.<ext>


@dataclass(frozen=True)
class Capture:
    """One captured image and the answer it got."""

    request_id: str
    index: int
    model: str
    version: int
    label: str
    probabilities: dict[str, float]
    captured_at: float  # seconds since the epoch
    image: str  # <sha256>.<ext>, in images/
    labelled: bool = False


def key(request_id: str, index: int) -> str:
    return hashlib.sha256(f"{request_id}\n{index}".encode()).hexdigest()[:40]


class CaptureStore:
    """The captured requests under FEEDBACK_DIR/.captured/, for every worker alike."""

    def __init__(self, feedback_dir: str | os.PathLike, max_bytes: int, max_age_s: float) -> None:
        self.root = Path(feedback_dir) / CAPTURED
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s

    def folder(self, model: str) -> Path:
        return self.root / model

    # -- writing (the monitor thread) ------------------------------------------------------------

    def write(self, capture: Capture, data: bytes) -> int:
        """Keep one captured image and its record; returns the bytes written."""
        folder = self.folder(capture.model)
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "requests").mkdir(exist_ok=True)
        image = folder / "images" / capture.image
        written = 0
        if not image.exists():
            write_atomically(image, data, durable=False)
            written += len(data)
        record = json.dumps(asdict(capture), sort_keys=True).encode()
        path = folder / "requests" / f"{key(capture.request_id, capture.index)}.json"
        (folder / "requests" / f"{path.stem}{LABELLED}").unlink(missing_ok=True)  # id reused
        write_atomically(path, record, durable=False)
        stamp = capture.captured_at
        os.utime(path, (stamp, stamp))
        # An image lives as long as its newest capture: another worker's monitor may write
        # an older capture of the same photo after a newer one, which must not age it.
        if written or image.stat().st_mtime < stamp:
            os.utime(image, (stamp, stamp))
        return written + len(record)

    # -- reading (request threads) --------------------------------------------------------------

    def find(self, model: str, request_id: str, index: int) -> Capture | None:
        """The capture of image `index` of request `request_id`, while its image is kept."""
        requests = self.folder(model) / "requests"
        stem = key(request_id, index)
        for path in (requests / f"{stem}.json", requests / f"{stem}{LABELLED}"):
            capture = self._read(path)
            if capture is not None and capture.request_id == request_id:
                return capture
        return None

    def image(self, model: str, name: str) -> bytes | None:
        """A captured image's bytes by its file name (`<sha256>.<ext>`), None when not kept."""
        if not IMAGE_NAME.match(name):
            return None
        try:
            return (self.folder(model) / "images" / name).read_bytes()
        except OSError:
            return None

    def unlabelled(self, model: str, limit: int) -> list[Capture]:
        """Up to `limit` captures not labelled yet, newest first (by name and time only, then
        reading just those)."""
        requests = self.folder(model) / "requests"
        entries = []
        try:
            with os.scandir(requests) as listing:
                for entry in listing:
                    name = entry.name
                    if not name.endswith(".json") or name.endswith(LABELLED) or name[0] == ".":
                        continue
                    try:
                        entries.append((entry.stat().st_mtime, entry.path))
                    except OSError:  # labelled or swept meanwhile (another worker): not listed
                        continue
        except OSError:
            return []
        found = []
        for _, path in sorted(entries, reverse=True):
            capture = self._read(Path(path))
            if capture is not None and (self.folder(model) / "images" / capture.image).exists():
                found.append(capture)
                if len(found) == limit:
                    break
        return found

    def mark_labelled(self, capture: Capture) -> None:
        """The capture leaves the labelling queue (it stays findable by its request id)."""
        requests = self.folder(capture.model) / "requests"
        stem = key(capture.request_id, capture.index)
        # FileNotFoundError: labelled already (by another worker), or swept meanwhile
        with contextlib.suppress(FileNotFoundError):
            os.replace(requests / f"{stem}.json", requests / f"{stem}{LABELLED}")

    @staticmethod
    def _read(path: Path) -> Capture | None:
        try:
            return Capture(**json.loads(path.read_bytes()))
        except (OSError, ValueError, TypeError):
            return None

    # -- the bounds (the monitor thread) --------------------------------------------------------

    def sweep(self, now: float | None = None) -> dict[str, int]:
        """Remove what is over the age limit, then the oldest files until all take at most
        CAPTURE_MAX_BYTES. Returns the bytes kept and the files removed for each reason."""
        now = time.time() if now is None else now
        files = []  # (time, order, size, path): a request sorts before an image of its time
        try:
            models = [p for p in self.root.iterdir() if p.is_dir()]
        except OSError:
            return {"bytes": 0, "age": 0, "size": 0}
        for model in models:
            for sub, order in (("requests", 0), ("images", 1)):
                try:
                    with os.scandir(model / sub) as entries:
                        for entry in entries:
                            try:
                                st = entry.stat()
                            except OSError:
                                continue
                            if entry.name.startswith(TEMP_PREFIX):
                                if st.st_mtime < now - STALE_TEMP_S:  # a crashed write's
                                    Path(entry.path).unlink(missing_ok=True)
                                continue  # another worker's write in progress
                            files.append((st.st_mtime, order, st.st_size, entry.path))
                except OSError:
                    continue
        files.sort()
        total = sum(size for _, _, size, _ in files)
        removed = {"age": 0, "size": 0}
        oldest = now - self.max_age_s
        for mtime, _, size, path in files:
            if mtime >= oldest and total <= self.max_bytes:
                break
            reason = "age" if mtime < oldest else "size"
            try:
                os.unlink(path)
            except FileNotFoundError:  # another worker's sweep took it, and counted it
                total -= size
                continue
            except OSError as exc:
                log.warning("cannot remove a captured file %s: %s", path, exc)
                continue
            total -= size
            removed[reason] += 1
        return {"bytes": total, **removed}
