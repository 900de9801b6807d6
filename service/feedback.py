"""Feedback: users say what a photo shows, and it becomes training data.

    FEEDBACK_DIR/<model>/<label>/<sha256>.<ext>    the labelled photos, a class-folder dataset
                                                   (`python -m training.retrain --extra-data
                                                   FEEDBACK_DIR/<model>`)
    FEEDBACK_DIR/<model>/feedback.jsonl            one JSON line per feedback: time, label,
                                                   photo, the request id it was captured
                                                   with, the answer given and its version

A label must be one of the model's classes (they never change), so the folder can only hold
the model's classes. A photo is in one class folder: labelled again, the latest label wins
(the journal keeps both lines). Every write is durable before the answer (temporary file,
fsync, rename, fsync of the folder; the journal line appended and fsynced), under a lock per
model that every worker takes; a write that fails stores nothing and is answered 503
`feedback_not_stored`. No Flask here.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from classifier.durable import fsync, make_dirs, write_atomically
from classifier.errors import ClassifierError
from service import calls, metrics, photos
from service.capture import Capture, CaptureStore
from service.dataplane import DataPlane, Upload, decode_uploads
from service.registry import ServedModel

log = logging.getLogger(__name__)

JOURNAL = "feedback.jsonl"
LOCK = ".lock"


class FeedbackOff(ClassifierError):
    code = "feedback_off"


class NotCaptured(ClassifierError):
    code = "not_captured"


class UnknownLabel(ClassifierError):
    code = "unknown_label"


class FeedbackNotStored(ClassifierError):
    code = "feedback_not_stored"


@dataclass(frozen=True)
class Predicted:
    """The answer the photo got (None where it could not be had)."""

    label: str
    version: int


@dataclass(frozen=True)
class Stored:
    """One stored feedback, as its journal line says it."""

    model: str
    label: str
    image: str  # <label>/<sha256>.<ext>, inside FEEDBACK_DIR/<model>
    sha256: str
    request_id: str | None  # the captured request's, for feedback on a capture
    predicted: Predicted | None

    @property
    def correct(self) -> bool | None:
        return None if self.predicted is None else self.predicted.label == self.label


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


class FeedbackStore:
    """The class-folder dataset and the journal of every model's feedback."""

    def __init__(self, feedback_dir: str | os.PathLike) -> None:
        self.root = Path(feedback_dir)

    def prepare(self, models: list[str]) -> None:
        """Make each model's folder, so that a trainer pointed at it (compose, the CronJob)
        finds it before the first feedback; a folder that cannot be made is logged."""
        for name in models:
            try:
                (self.root / name).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                log.warning("feedback folder %s cannot be made: %s", self.root / name, exc)

    def add(self, stored: Stored, data: bytes, entry: dict) -> None:
        """Write the photo into its class folder and the journal line; durable on return.
        The photo leaves any other class folder of the model (the latest label wins)."""
        folder = self.root / stored.model
        target = folder / stored.image
        try:
            make_dirs(target.parent)
            with self._lock(folder):
                created = not target.exists()
                try:  # the photo may be in place when its folder's fsync fails
                    if created:
                        write_atomically(target, data, durable=True)
                    self._append(folder / JOURNAL, entry)
                except OSError:
                    if created:
                        target.unlink(missing_ok=True)
                    raise
                self._leave_older_labels(folder, stored)
        except OSError as exc:
            log.error("feedback for %s not stored in %s: %s", stored.model, folder, exc)
            raise FeedbackNotStored(
                f"the feedback could not be stored ({exc.strerror or exc}); nothing was "
                "recorded: try again later",
            ) from None

    @staticmethod
    @contextmanager
    def _lock(folder: Path) -> Iterator[None]:
        """One writer at a time per model, across this host's workers (flock)."""
        with open(folder / LOCK, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _append(journal: Path, entry: dict) -> None:
        line = (json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n").encode()
        new = not journal.exists()
        fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.fstat(fd).st_size
            try:
                view = memoryview(line)
                while view:  # a full disk may take part of the line before it refuses
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
                if new:  # the journal's own entry in the folder, as for a photo
                    fsync(journal.parent)
            except OSError:
                with suppress(OSError):
                    os.ftruncate(fd, start)  # no half line, nor one answered 503
                raise
        finally:
            os.close(fd)

    @classmethod
    def _leave_older_labels(cls, folder: Path, stored: Stored) -> None:
        """Recorded already: a copy under an older label that cannot be removed now is
        logged, not refused (a retry would record the feedback twice); the next feedback on
        the photo removes it."""
        try:
            cls._leave_other_classes(folder, stored)
        except OSError as exc:
            log.error(
                "feedback recorded, but an older label's copy of %s stays in %s: %s",
                stored.image,
                folder,
                exc,
            )

    @staticmethod
    def _leave_other_classes(folder: Path, stored: Stored) -> None:
        keep = Path(stored.image).parent.name
        for other in folder.iterdir():
            if not other.is_dir() or other.name == keep or other.name.startswith("."):
                continue
            for old in other.glob(f"{stored.sha256}.*"):
                old.unlink(missing_ok=True)
                fsync(other)


class Feedback:
    """Feedback on a captured request or on an uploaded photo, for one worker."""

    def __init__(
        self, plane: DataPlane, store: FeedbackStore | None, captures: CaptureStore | None
    ) -> None:
        self.plane = plane
        self.store = store
        self.captures = captures

    def on_capture(self, name: str, request_id: str, index: int, label: str) -> Stored:
        """The label of image `index` of a captured request (NotCaptured when it was not
        captured, or no longer is)."""
        model = self._model(name, label)
        capture = self.captures.find(name, request_id, index) if self.captures else None
        data = self.captures.image(name, capture.image) if capture else None
        if capture is None or data is None:
            why = (
                "capture is off on this server (CAPTURE_RATE=0)"
                if not self.plane.settings.capture_rate
                else "it was not captured, or no longer is (or not yet: a capture is written "
                "just after its answer, retry in a moment)"
            )
            raise NotCaptured(
                f"no captured image {index} of request {request_id!r} for model "
                f"{model.name!r}: {why}; send the photo itself as multipart `image` with `label`"
            )
        ext = Path(capture.image).suffix.lstrip(".")
        predicted = Predicted(capture.label, capture.version)
        stored = self._store(model, label, data, ext, request_id, predicted, "capture")
        self.captures.mark_labelled(capture)
        return stored

    def on_upload(self, name: str, upload: Upload, label: str) -> Stored:
        """The label of a photo sent with it: checked as an image as predict checks one, and
        answered by the serving version for the record (stored without an answer when the
        model cannot answer now: the feedback is kept whatever the queue)."""
        model = self._model(name, label)
        settings = self.plane.settings
        pixels = decode_uploads([upload], model.spec, settings.max_image_pixels)
        try:
            probs = self.plane.predict(model, pixels, observe=False)
        except ClassifierError as exc:
            log.warning("feedback stored without the model's answer: %s", exc.message)
            predicted = None
        else:
            predicted = Predicted(model.predictor.labels(probs)[0], model.version)
        ext = photos.extension(upload.data)  # decoded above: a format the decoder accepts
        return self._store(model, label, upload.data, ext, None, predicted, "upload")

    def unlabelled(self, name: str, limit: int) -> tuple[ServedModel, list[Capture]]:
        model = self.plane.model(name)
        return model, self.captures.unlabelled(name, limit) if self.captures else []

    def captured_image(self, name: str, image: str) -> bytes | None:
        self.plane.state(name)  # ModelNotFound
        return self.captures.image(name, image) if self.captures else None

    def _model(self, name: str, label: str) -> ServedModel:
        if self.store is None:
            raise FeedbackOff("feedback is off on this server: it runs without FEEDBACK_DIR")
        model = self.plane.model(name)
        classes = model.predictor.class_names
        if label not in classes:
            raise UnknownLabel(
                f"label {label!r} is not a class of model {model.name!r}; its classes: "
                f"{', '.join(classes)}",
                details={"classes": list(classes)},
            )
        return model

    def _store(
        self,
        model: ServedModel,
        label: str,
        data: bytes,
        ext: str,
        request_id: str | None,
        predicted: Predicted | None,
        source: str,
    ) -> Stored:
        digest = photos.sha256(data)
        call = calls.current()
        stored = Stored(model.name, label, f"{label}/{digest}.{ext}", digest, request_id, predicted)
        entry = {
            "time": now_iso(),
            "model": model.name,
            "label": label,
            "image": stored.image,
            "sha256": digest,
            "source": source,
            "request_id": request_id,
            "feedback_request_id": call.request_id if call else None,
            "predicted": None if predicted is None else vars(predicted),
            "correct": stored.correct,
        }
        self.store.add(stored, data, entry)
        version = "-" if predicted is None else str(predicted.version)
        correct = "unknown" if stored.correct is None else str(stored.correct).lower()
        metrics.FEEDBACK.labels(model.name, version, correct).inc()
        return stored
