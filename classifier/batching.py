"""Dynamic batching: concurrent requests' images become few, fixed-size model calls.

Request threads `submit` images into a bounded queue; one inference thread per model takes up
to `max_batch_size` of them, waiting at most `timeout_s` after the first, pads the batch to
the next allowed size, runs it, and hands each caller its own results. The allowed sizes are
powers of two up to the maximum (so TensorFlow traces few shapes and its memory stays
bounded), or every size for a runtime to which a new batch size costs nothing once it has run
(ONNX Runtime, OpenVINO: padding 9 images to 16 would cost 7 images' compute).

No HTTP here: the service's data plane (service/dataplane.py) and the in-process client
(client/local.py) both use it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np

from classifier.errors import ClassifierError

log = logging.getLogger(__name__)


class QueueFull(ClassifierError):
    code = "queue_full"


class DeadlineExceeded(ClassifierError):
    code = "deadline_exceeded"


class InferenceFailed(ClassifierError):
    code = "inference_failed"


def padded_sizes(max_batch_size: int, every: bool = False) -> list[int]:
    """Powers of two below the maximum, then the maximum itself; with `every`, each size."""
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be at least 1")
    if every:
        return list(range(1, max_batch_size + 1))
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return [*sizes, max_batch_size]


def pad_to(sizes: list[int], n: int) -> int:
    for size in sizes:
        if size >= n:
            return size
    raise ValueError(f"batch of {n} is over the maximum {sizes[-1]}")


@dataclass
class _Item:
    image: np.ndarray
    deadline: float
    enqueued: float
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    """What the batcher has done in this worker (exposed in the model status endpoint)."""

    batches: int = 0
    images: int = 0
    rejected: int = 0
    expired: int = 0
    failed_batches: int = 0
    sizes: collections.Counter = field(default_factory=collections.Counter)

    def to_dict(self) -> dict:
        return {
            "batches": self.batches,
            "images": self.images,
            "mean_batch_size": round(self.images / self.batches, 3) if self.batches else None,
            "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())},
            "rejected_queue_full": self.rejected,
            "expired_deadline": self.expired,
            "failed_batches": self.failed_batches,
        }


class Batcher:
    """One inference thread fed by a bounded queue of single images."""

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int = 16,
        timeout_s: float = 0.0,
        capacity: int = 256,
        name: str = "model",
        on_batch: Callable[[int, int, float, float], None] | None = None,
        every_size: bool = False,
    ) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.sizes = padded_sizes(max_batch_size, every_size)
        self.timeout_s = timeout_s
        self.capacity = capacity
        self.name = name
        self.stats = BatchStats()
        self._on_batch = on_batch
        self._queue: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def warm_up(self, shape: tuple[int, ...]) -> None:
        """Run every padded size once, so no request pays for a first call."""
        for size in self.sizes:
            self._run(np.zeros((size, *shape), dtype=np.uint8))

    def start(self) -> Batcher:
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what is queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def queued(self) -> int:
        return len(self._queue)

    def check_room(self, n: int) -> None:
        """Refuse early, before any decoding, when `n` images cannot fit (submit re-checks)."""
        if len(self._queue) + n > self.capacity:
            self.stats.rejected += n
            raise QueueFull(f"the inference queue is full ({self.capacity} images); retry shortly")

    def submit(self, images: np.ndarray, deadline: float) -> list[Future]:
        """Queue every image of one request, all or none; raises QueueFull when there is no room."""
        now = time.monotonic()
        items = [_Item(image, deadline, now) for image in images]
        with self._cond:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            self.check_room(len(items))  # under the lock: all or none
            self._queue.extend(items)
            self._cond.notify()
        return [item.future for item in items]

    def predict(self, images: np.ndarray, timeout_s: float) -> np.ndarray:
        """Submit and wait; raises DeadlineExceeded when the answer is not back in time."""
        deadline = time.monotonic() + timeout_s
        futures = self.submit(images, deadline)
        results = []
        try:
            for future in futures:
                results.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
        except FutureTimeout:
            for future in futures:
                future.cancel()  # frees its place: the loop skips cancelled items
            raise DeadlineExceeded(
                f"no answer within the request deadline of {timeout_s * 1000:.0f} ms"
            ) from None
        return np.stack(results)

    def _take(self) -> list[_Item] | None:
        """Block for the first item, then gather more until the batch is full or time is up."""
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            batch = [self._queue.popleft()]
            until = time.monotonic() + self.timeout_s
            while len(batch) < self.max_batch_size:
                if self._queue:
                    batch.append(self._queue.popleft())
                    continue
                remaining = until - time.monotonic()
                if remaining <= 0 or self._stopping:
                    break
                self._cond.wait(remaining)
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            now = time.monotonic()
            live = []
            for item in batch:
                if not item.future.set_running_or_notify_cancel():
                    continue  # its caller gave up
                if item.deadline <= now:
                    self.stats.expired += 1
                    item.future.set_exception(DeadlineExceeded("the request deadline passed"))
                    continue
                live.append(item)
            if live:
                self._run_batch(live, now)

    def _run_batch(self, items: list[_Item], started: float) -> None:
        n = len(items)
        size = pad_to(self.sizes, n)
        dtype = np.result_type(*(item.image.dtype for item in items))  # uint8, or float32 pixels
        batch = np.zeros((size, *items[0].image.shape), dtype=dtype)
        for i, item in enumerate(items):
            batch[i] = item.image
        try:
            rows = np.asarray(self._run(batch)).reshape(size, -1)[:n]  # one row per image
        except Exception as exc:
            self.stats.failed_batches += 1
            log.exception("batch of %d failed in model %s", n, self.name)
            error = InferenceFailed("inference failed")
            error.__cause__ = exc
            for item in items:
                item.future.set_exception(error)
            return
        finished = time.monotonic()
        self.stats.batches += 1
        self.stats.images += n
        self.stats.sizes[n] += 1
        if self._on_batch is not None:
            wait = started - min(item.enqueued for item in items)
            self._on_batch(n, size, wait, finished - started)
        for item, row in zip(items, rows, strict=True):
            item.future.set_result(row)
