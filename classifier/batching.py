"""Dynamic batching: concurrent requests' images become few, fixed-size model calls.

Request threads `submit` images into a bounded queue; an inference thread of the model takes
up to `max_batch_size` of them, waiting at most `timeout_s` after the first, pads the batch to
the next allowed size, runs it, and hands each caller its own results. A model has one such
thread, or `lanes` of them where its runtime can overlap calls: a batch taken while no other
runs and none waits runs `alone` (on every inference thread), the others overlap (sharing
the threads), so a lone request is fast and a loaded model keeps every core on its own work.
A lane starts a batch beside a running one only once a full batch waits: batches stay full
under load (lanes taking whatever had arrived split 32 connections into batches of about 8).
The allowed sizes are powers of two up to the maximum (so TensorFlow traces few shapes and
its memory stays bounded), or every size for a runtime to which a new batch size costs nothing
once it has run (ONNX Runtime, OpenVINO: padding 9 images to 16 would cost 7 images'
compute).

No HTTP here: the service's data plane (service/dataplane.py) and the in-process client
(client/local.py) both use it.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


def stack(images: list[np.ndarray], size: int) -> np.ndarray:
    """The images as one batch of `size`, padded with zeros, copied without letting go of the
    interpreter lock: numpy lets go of it for each image's copy, and taking it back from the
    request threads cost a context switch per image at c=32 (perf, docs/benchmarks.md)."""
    first = images[0]
    if not all(
        image.dtype == first.dtype and image.shape == first.shape and image.flags.c_contiguous
        for image in images
    ):  # uint8 and float32 pixels in one batch (V2 tensors), or a strided view: numpy's way
        batch = np.zeros((size, *first.shape), dtype=np.result_type(*images))
        for i, image in enumerate(images):
            batch[i] = image
        return batch
    step = first.nbytes
    buffer = bytearray(size * step)  # zeros: the padding
    for i, image in enumerate(images):
        buffer[i * step : (i + 1) * step] = image.data.cast("B")
    return np.frombuffer(buffer, dtype=first.dtype).reshape(size, *first.shape)


class Pending:
    """One request's images in the queue, answered and given up together: its caller waits
    on one lock for all of them (a Future per image made a condition and its lock, and was
    waited on and cancelled one by one). Its state changes under the batcher's answer lock."""

    __slots__ = ("_done", "error", "finished", "given_up", "left", "rows")

    def __init__(self, n: int) -> None:
        self.rows: list[np.ndarray | None] = [None] * n
        self.left = n
        self.error: BaseException | None = None
        self.given_up = False  # its caller stopped waiting: what is left of it is not run
        self.finished = False
        self._done = threading.Lock()
        self._done.acquire()  # released once, when every row or an error is in

    def answer(self, index: int, row: np.ndarray) -> None:
        """One image's row (under the answer lock)."""
        if self.finished:
            return
        self.rows[index] = row
        self.left -= 1
        if not self.left:
            self._finish()

    def fail(self, error: BaseException) -> None:
        """The request's answer is this error (under the answer lock)."""
        if not self.finished:
            self.error = error
            self._finish()

    def _finish(self) -> None:
        self.finished = True
        self._done.release()

    def wait(self, timeout: float) -> bool:
        """Whether every row or an error came within `timeout` seconds."""
        return self._done.acquire(timeout=max(0.0, timeout))

    def result(self, timeout: float) -> np.ndarray:
        """The rows in order; raises the request's error, or DeadlineExceeded meanwhile."""
        if not self.wait(timeout):
            raise DeadlineExceeded(f"no answer within {timeout * 1000:.0f} ms")
        self._done.release()  # a later wait returns at once
        if self.error is not None:
            raise self.error
        return np.stack(self.rows)


class _Item:
    __slots__ = ("deadline", "enqueued", "image", "index", "request")

    def __init__(
        self, image: np.ndarray, deadline: float, enqueued: float, request: Pending, index: int
    ) -> None:
        self.image = image
        self.deadline = deadline
        self.enqueued = enqueued
        self.request = request
        self.index = index


@dataclass
class BatchStats:
    """What the batcher has done in this worker (exposed in the model status endpoint)."""

    batches: int = 0
    images: int = 0
    rejected: int = 0
    expired: int = 0
    failed_batches: int = 0
    overlapped: int = 0  # batches run beside another, sharing the threads (lanes)
    sizes: collections.Counter = field(default_factory=collections.Counter)

    def to_dict(self) -> dict:
        return {
            "batches": self.batches,
            "images": self.images,
            "mean_batch_size": round(self.images / self.batches, 3) if self.batches else None,
            "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())},
            "overlapped_batches": self.overlapped,
            "rejected_queue_full": self.rejected,
            "expired_deadline": self.expired,
            "failed_batches": self.failed_batches,
        }


class Batcher:
    """Inference threads (one, or `lanes`) fed by a bounded queue of single images.

    With one lane `run(batch)` is called; with more, `run(batch, alone=...)`.
    """

    def __init__(
        self,
        run: Callable[..., np.ndarray],
        *,
        max_batch_size: int = 16,
        timeout_s: float = 0.0,
        capacity: int = 256,
        name: str = "model",
        on_batch: Callable[[int, int, float, float], None] | None = None,
        every_size: bool = False,
        lanes: int = 1,
    ) -> None:
        if lanes < 1:
            raise ValueError("lanes must be at least 1")
        self._run = run
        self.lanes = lanes
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
        self._running = 0  # batches taken and not yet answered (under _cond)
        self._stats_lock = threading.Lock()
        self._answering = threading.Lock()  # every Pending's state changes under it
        self._threads: list[threading.Thread] = []
        self._here = threading.Lock()  # run_here: one model call at a time

    def warm_up(self, shape: tuple[int, ...]) -> None:
        """Every padded size once alone, and on every lane at once (OpenVINO keeps state per
        stream), so that no request pays for a first call."""
        with ThreadPoolExecutor(self.lanes) as pool:
            for size in self.sizes:
                batch = np.zeros((size, *shape), dtype=np.uint8)
                self._call(batch, True)
                if self.lanes > 1:
                    list(pool.map(self._call, [batch] * self.lanes, [False] * self.lanes))

    def start(self) -> Batcher:
        for lane in range(self.lanes):
            suffix = f"-{lane + 1}" if self.lanes > 1 else ""
            thread = threading.Thread(
                target=self._loop, name=f"batcher-{self.name}{suffix}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what is queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        until = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, until - time.monotonic()))

    def queued(self) -> int:
        return len(self._queue)

    @property
    def stopping(self) -> bool:
        """Stopped or stopping: it takes no more images."""
        return self._stopping

    def check_room(self, n: int) -> None:
        """Refuse early, before any decoding, when `n` images cannot fit (submit re-checks)."""
        if len(self._queue) + n > self.capacity:
            with self._stats_lock:
                self.stats.rejected += n
            raise QueueFull(f"the inference queue is full ({self.capacity} images); retry shortly")

    def expired(self, n: int) -> None:
        """Count `n` images whose deadline passed before they were queued (while decoding)."""
        with self._stats_lock:
            self.stats.expired += n

    def submit(self, images: np.ndarray, deadline: float) -> Pending:
        """Queue every image of one request, all or none; raises QueueFull when there is no room."""
        now = time.monotonic()
        request = Pending(len(images))
        items = [_Item(image, deadline, now, request, i) for i, image in enumerate(images)]
        with self._cond:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            self.check_room(len(items))  # under the lock: all or none
            self._queue.extend(items)
            if not self._held_back():  # a lane held back is not woken for each image
                self._cond.notify()
        return request

    def predict(self, images: np.ndarray, timeout_s: float) -> np.ndarray:
        """Submit and wait; raises DeadlineExceeded when the answer is not back in time."""
        deadline = time.monotonic() + timeout_s
        request = self.submit(images, deadline)
        if not request.wait(deadline - time.monotonic()):
            with self._answering:
                answered = request.finished  # in just now: it counts
                request.given_up = not answered
            if not answered:
                self._withdraw()
                raise DeadlineExceeded(
                    f"no answer within the request deadline of {timeout_s * 1000:.0f} ms"
                )
        if request.error is not None:  # one image failed: the request's answer is that error
            with self._answering:
                request.given_up = True
            self._withdraw()
            raise request.error
        return np.stack(request.rows)

    def run_here(self, images: np.ndarray) -> np.ndarray:
        """Once stopped, run `images` in the calling thread, one call at a time, in padded
        batches counted and observed as any: for a late request of a retired version (its
        lanes are gone; the warmed sizes keep ONNX Runtime's arena bounded)."""
        if not self._stopping:
            raise RuntimeError("run_here is for a stopped batcher; predict otherwise")
        rows: list[np.ndarray] = []
        with self._here:
            for start in range(0, len(images), self.max_batch_size):
                now = time.monotonic()
                chunk = images[start : start + self.max_batch_size]
                request = Pending(len(chunk))
                items = [_Item(image, math.inf, now, request, i) for i, image in enumerate(chunk)]
                self._run_batch(items, now, alone=True)
                rows.append(request.result(0))
        return np.concatenate(rows)

    def _withdraw(self) -> None:
        """Take the images of requests given up out of the queue: their places are free at
        once, not only once an inference thread reaches them (a busy model would otherwise
        refuse new requests for a queue of abandoned images)."""
        with self._cond:
            self._queue = collections.deque(
                item for item in self._queue if not item.request.given_up
            )

    def _take(self) -> tuple[list[_Item], bool] | None:
        """Block for the first item, then gather more until the batch is full or time is up;
        with it, whether it runs alone (no other batch running, none waiting)."""
        with self._cond:
            while not self._queue or self._held_back():
                if self._stopping and not self._queue:
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
            alone = self._running == 0 and not self._queue
            self._running += 1
            if self._queue:
                self._cond.notify()  # another lane takes what is left
        return batch, alone

    def _held_back(self) -> bool:
        """Whether this lane waits although images are queued: another batch is running and
        fewer than a full batch wait. Lanes taking whatever had arrived split 32 connections'
        images into batches of about 8, which cost more per image than 16 (docs/benchmarks.md);
        a lone lane would wait for the running batch anyway."""
        return bool(self._running) and len(self._queue) < self.max_batch_size and not self._stopping

    def _loop(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            try:
                self._answer(*taken)
            finally:
                with self._cond:
                    self._running -= 1
                    if self._queue:
                        self._cond.notify()  # a lane held back may take them now

    def _answer(self, batch: list[_Item], alone: bool) -> None:
        """Drop what was given up or is late, and run the rest."""
        now = time.monotonic()
        live = []
        with self._answering:
            for item in batch:
                request = item.request
                if request.given_up:
                    continue  # its caller gave up
                if item.deadline <= now:  # each image counts, as it counted when queued
                    with self._stats_lock:
                        self.stats.expired += 1
                    request.fail(DeadlineExceeded("the request deadline passed"))
                    continue
                if not request.finished:  # else one of its images failed
                    live.append(item)
        if live:
            self._run_batch(live, now, alone)

    def _call(self, batch: np.ndarray, alone: bool) -> np.ndarray:
        return self._run(batch, alone=alone) if self.lanes > 1 else self._run(batch)

    def _run_batch(self, items: list[_Item], started: float, alone: bool) -> None:
        n = len(items)
        size = pad_to(self.sizes, n)
        batch = stack([item.image for item in items], size)
        try:
            rows = np.asarray(self._call(batch, alone)).reshape(size, -1)[:n]  # a row per image
        except Exception as exc:
            with self._stats_lock:
                self.stats.failed_batches += 1
            log.exception("batch of %d failed in model %s", n, self.name)
            error = InferenceFailed("inference failed")
            error.__cause__ = exc
            with self._answering:
                for item in items:
                    item.request.fail(error)
            return
        finished = time.monotonic()
        with self._stats_lock:
            self.stats.batches += 1
            self.stats.images += n
            self.stats.sizes[n] += 1
            self.stats.overlapped += not alone
        with self._answering:
            for item, row in zip(items, rows, strict=True):
                item.request.answer(item.index, row)
        if self._on_batch is not None:
            self._observe(
                n, size, started - min(item.enqueued for item in items), finished - started
            )

    def _observe(self, n: int, size: int, wait: float, run: float) -> None:
        """The batch's metrics, after its answers: a failing observer is logged, and neither
        holds the answers back nor ends the lane's thread (every later request would 504)."""
        try:
            self._on_batch(n, size, wait, run)
        except Exception:
            log.exception("the batch observer failed in model %s", self.name)
