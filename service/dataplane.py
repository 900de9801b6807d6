"""The data plane: the one path from every protocol to the models.

Own REST, the Open Inference Protocol over REST and gRPC, and TensorFlow Serving's REST API
are thin adapters over it (service/protocols/): each reads its request into images (encoded
files, or pixels) and writes the answer back in its own shape; the lookup, the limits, the
queue room, the decoding and the batcher are here, once. No Flask and no grpc here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from classifier.batching import DeadlineExceeded, QueueFull, stack
from classifier.errors import ImageError
from classifier.preprocess import decode_image
from classifier.spec import InputSpec
from service import calls
from service.errors import RequestError
from service.registry import ModelState, Registry, ServedModel, VersionNotFound
from service.settings import Settings

if TYPE_CHECKING:
    from service.monitor import Monitor


@dataclass(frozen=True)
class Upload:
    """One encoded image file as a request carried it."""

    data: bytes
    filename: str | None = None


Images = Sequence[Upload] | np.ndarray  # encoded files, or pixels [N, H, W, 3]


@dataclass(frozen=True)
class Deadline:
    """When a request must be answered by (on time.monotonic, the batcher's clock), and the
    limit it comes from (for the message)."""

    at: float
    limit_s: float

    def left(self) -> float:
        return self.at - time.monotonic()

    def check(self) -> None:
        """Past it, nothing more is decoded or queued: the model never runs for it."""
        if self.left() <= 0:
            raise self.exceeded()

    def exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"no answer within the request deadline of {self.limit_s * 1000:.0f} ms"
        )


class DataPlane:
    """Health, lookups and inference for every protocol of one worker."""

    def __init__(
        self, registry: Registry, settings: Settings, monitor: Monitor | None = None
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.monitor = monitor  # after each answer: live metrics, drift, capture (monitor.py)

    # -- health -------------------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """The default model is loaded and warmed up."""
        return self.registry.ready()

    # -- lookups ------------------------------------------------------------------------------

    def model(self, name: str, version: int | None = None) -> ServedModel:
        """The version serving `name` (the newest loaded without `version`), noted on the call;
        ModelNotFound, VersionNotFound or ModelNotReady otherwise."""
        model = self.registry.get(name, version)
        calls.note_model(model.name, model.version)
        return model

    def state(self, name: str) -> ModelState:
        """Every version of `name` and what the store scan found (ModelNotFound if unknown)."""
        return self.registry.find(name)

    def labelled(self, name: str, label: str) -> int:
        """The version a label names (VERSION_LABELS)."""
        labels = self.settings.labels
        if label not in labels:
            raise VersionNotFound(
                f"model {name!r} has no version labelled {label!r}; labels: {sorted(labels)}"
            )
        return labels[label]

    # -- inference ----------------------------------------------------------------------------

    def check_count(self, n: int) -> None:
        """At most MAX_IMAGES_PER_REQUEST images in one request (a protocol may check a
        declared count early, before reading any image)."""
        limit = self.settings.max_images_per_request
        if n > limit:
            raise RequestError(
                f"{n} images in one request; the limit is {limit}", code="too_many_images"
            )

    def deadline(self, timeout_s: float | None = None) -> Deadline:
        """REQUEST_DEADLINE_MS from now, when the request's images are in hand (their decoding
        counts, a slow client's upload does not), or a call's own `timeout_s` when sooner."""
        limit_s = self.settings.request_deadline_ms / 1000
        if timeout_s is not None:
            limit_s = min(limit_s, max(0.0, timeout_s))
        return Deadline(time.monotonic() + limit_s, limit_s)

    def predict(
        self,
        model: ServedModel,
        images: Images,
        timeout_s: float | None = None,
        *,
        observe: bool = True,
    ) -> np.ndarray:
        """Class probabilities (n, C) in class order, through the model's batcher: the count
        limit, then queue room (overload costs no decoding), then decoding in this thread,
        in parallel with the model, all within the request's deadline (`timeout_s`, a call's
        own deadline, may shorten it). The answer goes to the monitor unless not `observe`
        (feedback's own)."""
        deadline = self.deadline(timeout_s)
        calls.note_images(len(images))
        self.check_count(len(images))
        model.batcher.check_room(len(images))
        pixels = self._decoded(model, images, deadline)
        try:
            probs = self._infer(model, pixels, deadline)
        except DeadlineExceeded:
            raise deadline.exceeded() from None
        if observe and self.monitor is not None:
            self.monitor.answered(model, images, probs)  # the files as sent, for capture
        return probs

    @staticmethod
    def _infer(model: ServedModel, pixels: np.ndarray, deadline: Deadline) -> np.ndarray:
        """Through the batcher; a version retired while this request read its upload (the
        batcher stops REQUEST_DEADLINE_MS + 1 s after a swap) answers it alone, rather than
        a 503 "shutting down" for a request that did nothing wrong."""
        if not model.batcher.stopping:
            try:
                return model.batcher.predict(pixels, deadline.left())
            except QueueFull:
                if not model.batcher.stopping:
                    raise
        deadline.check()
        model.batcher.stop()  # its last queued batch first: the model runs one call at a time
        return model.predict_alone(pixels)

    def _decoded(self, model: ServedModel, images: Images, deadline: Deadline) -> np.ndarray:
        """The pixels to queue, decoded while the deadline lasts; a request past it counts as
        expired, as the batcher counts one that expires in its queue."""
        try:
            pixels = images
            if not isinstance(pixels, np.ndarray):
                pixels = decode_uploads(
                    pixels, model.spec, self.settings.max_image_pixels, deadline
                )
            deadline.check()
        except DeadlineExceeded:
            model.batcher.expired(len(images))
            raise
        return pixels

    def classify(
        self, model: ServedModel, images: Images, timeout_s: float | None = None
    ) -> tuple[np.ndarray, list[str]]:
        """For the protocols' tensors: float32 probabilities [N, C] in class order, and the
        label answered for each image."""
        probs = self.predict(model, images, timeout_s)
        return probs.astype(np.float32), model.predictor.labels(probs)


def decode_uploads(
    uploads: Sequence[Upload],
    spec: InputSpec,
    max_pixels: int,
    deadline: Deadline | None = None,
) -> np.ndarray:
    """Decode each file to the model's input; the error names the file (or its index). Past
    the `deadline` no further file is decoded (one decode in progress cannot be stopped).
    The images are put together as the batcher does it (`stack`): numpy's copy into an array
    let go of the interpreter lock for each image."""
    images = []
    for index, upload in enumerate(uploads):
        if deadline is not None:
            deadline.check()
        try:
            images.append(decode_image(upload.data, spec, max_pixels=max_pixels))
        except ImageError as exc:
            exc.message = f"{upload.filename or f'image {index}'}: {exc.message}"
            exc.details = {"index": index, "filename": upload.filename}
            raise
    if not images:
        return np.empty((0, *spec.shape), dtype=np.uint8)
    return stack(images, len(images))
