"""What happens after an answer, off the request path: the live metrics of the answers (class
mix, top-class probability), the drift windows and their gauges, and capture.

The data plane hands every answer over here (`Monitor.answered`, in the request thread: the
capture sample is drawn there, then one non-blocking put on a bounded queue; it never blocks
and never raises). One thread per worker does the rest: metrics, drift windows, writing the
captured images (service/capture.py), refreshing the drift gauges every few seconds and
keeping the captures within their bounds. When its queue is full, answers are left out and
counted (`monitor_dropped_answers_total`); the requests are not slowed. The images sampled for
capture wait in memory until written: past CAPTURE_PENDING_BYTES of them (a slow or stalled
feedback volume), further samples are left out and counted (`capture_images_total{result=
"dropped"}`) while the answers still count. No Flask here.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass

import numpy as np

from classifier.errors import ClassifierError
from classifier.runtimes import answers
from service import calls, metrics, photos
from service.capture import Capture, CaptureStore
from service.drift import DriftWindows, reference_of
from service.registry import Registry, ServedModel

log = logging.getLogger(__name__)

QUEUE_SIZE = 4096  # answered calls waiting for the monitor thread
TAKE_AT_ONCE = 256  # answered calls the monitor thread observes together
GATHER_S = 0.02  # after a pass, answers gather this long: fewer, larger passes under load
CAPTURE_PENDING_BYTES = 64 * 1024 * 1024  # sampled images in that queue, not written yet
REFRESH_S = 2.0  # drift gauges are this fresh
SWEEP_S = 60.0  # captures are swept at least this often (age), and after SWEEP_SHARE
SWEEP_SHARE = 0.05  # of CAPTURE_MAX_BYTES written since the last sweep


@dataclass(frozen=True)
class Answered:
    model: ServedModel
    probs: np.ndarray
    sampled: list[tuple[int, object]]  # (index, Upload or pixels) of the images to capture
    request_id: str
    when: float
    pending: int = 0  # the bytes of `sampled`, counted in Monitor's pending bytes


class Monitor:
    """The after-answer work of one worker."""

    def __init__(
        self,
        registry: Registry,
        windows: DriftWindows,
        captures: CaptureStore | None = None,
        capture_rate: float = 0.0,
    ) -> None:
        self.registry = registry
        self.windows = windows
        self.captures = captures
        self.capture_rate = capture_rate if captures is not None else 0.0
        self._queue: queue.Queue[Answered | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._written = 0
        self._pending = 0  # bytes of sampled images queued and not written yet
        self._pending_lock = threading.Lock()
        self._next_sweep = 0.0
        self._next_refresh = 0.0
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self._thread.start()

    # -- the request thread -----------------------------------------------------------------------

    def answered(self, model: ServedModel, images, probs: np.ndarray) -> None:
        """Hand an answer over; never blocks, never raises."""
        pending = 0
        try:
            rate = self.capture_rate
            sampled = (
                [(i, images[i]) for i in range(len(probs)) if random.random() < rate]
                if rate
                else []
            )
            if sampled:
                sampled, pending = self._hold(model, [(i, _own(image)) for i, image in sampled])
            call = calls.current()
            request_id = call.request_id if call else calls.new_request_id()
            self._queue.put_nowait(
                Answered(model, probs, sampled, request_id, time.time(), pending)
            )
        except queue.Full:
            self._release(pending)
            metrics.MONITOR_DROPPED.inc()
        except Exception:  # the answer is sent whatever happens here
            self._release(pending)
            log.exception("answer not handed to the monitor")

    def _hold(self, model: ServedModel, sampled: list) -> tuple[list, int]:
        """The samples and their bytes, counted as pending; none when they would take the
        pending bytes past CAPTURE_PENDING_BYTES (counted as dropped captures)."""
        size = sum(_nbytes(image) for _, image in sampled)
        with self._pending_lock:
            if self._pending + size <= CAPTURE_PENDING_BYTES:
                self._pending += size
                return sampled, size
        metrics.CAPTURED.labels(model.name, "dropped").inc(len(sampled))
        return [], 0

    def _release(self, size: int) -> None:
        if size:
            with self._pending_lock:
                self._pending -= size

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until every answer handed over so far is handled (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    # -- the monitor thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            items = self._take()
            try:
                if items:
                    self._observe(items)
                now = time.monotonic()
                if now >= self._next_refresh:
                    self._next_refresh = now + REFRESH_S
                    self.refresh_gauges()
                if self.captures is not None and (
                    now >= self._next_sweep or self._written > SWEEP_SHARE * self.captures.max_bytes
                ):
                    self._next_sweep, self._written = now + SWEEP_S, 0
                    self._sweep()
            except Exception:  # the thread must outlive any surprise
                log.exception("monitor failed on an answer")
            finally:
                for item in items:
                    self._release(item.pending)
                    self._queue.task_done()
            if items:
                time.sleep(GATHER_S)

    def _take(self) -> list[Answered]:
        """The answers waiting, up to TAKE_AT_ONCE (none after REFRESH_S without any): a
        batch's answers arrive together, and observing them together costs one pass of the
        metrics and the window instead of one per request."""
        try:
            items = [self._queue.get(timeout=REFRESH_S)]
        except queue.Empty:
            return []
        while len(items) < TAKE_AT_ONCE:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _observe(self, items: list[Answered]) -> None:
        """The answers of each served version together: its metrics, its window, and then
        each answer's captures."""
        by_model: dict[int, list[Answered]] = {}
        for item in items:
            by_model.setdefault(id(item.model), []).append(item)
        for group in by_model.values():
            try:
                self._observe_model(group)
            except Exception:  # one version's surprise leaves the others' answers counted
                log.exception("monitor failed on %d answers", len(group))

    def _observe_model(self, items: list[Answered]) -> None:
        model = items[0].model
        predictor = model.predictor
        probs = np.concatenate([item.probs for item in items])
        answered = np.asarray(answers(probs, predictor.metadata.decision_threshold))
        top = probs.max(axis=1)
        version = str(model.version)
        names = predictor.class_names
        for index, count in zip(*np.unique(answered, return_counts=True), strict=True):
            metrics.PREDICTIONS.labels(model.name, version, names[index]).inc(int(count))
        histogram = metrics.CONFIDENCE.labels(model.name, version)
        for p in top.tolist():
            histogram.observe(p)
        self.windows.add(model.name, model.version, answered, top)
        offset = 0
        for item in items:
            for index, image in item.sampled:
                self._capture(item, index, image, names[answered[offset + index]])
            offset += len(item.probs)

    def _capture(self, item: Answered, index: int, image, label: str) -> None:
        model = item.model
        try:
            data = image if isinstance(image, np.ndarray) else image.data
            data = photos.png(data) if isinstance(data, np.ndarray) else data
            name = f"{photos.sha256(data)}.{photos.extension(data)}"
            names = model.predictor.class_names
            capture = Capture(
                request_id=item.request_id,
                index=index,
                model=model.name,
                version=model.version,
                label=label,
                probabilities=dict(zip(names, map(float, item.probs[index]), strict=True)),
                captured_at=item.when,
                image=name,
            )
            self._written += self.captures.write(capture, data)
        except (OSError, ValueError) as exc:
            metrics.CAPTURED.labels(model.name, "failed").inc()
            log.warning("capture of %s image %d failed: %s", item.request_id, index, exc)
            return
        metrics.CAPTURED.labels(model.name, "stored").inc()

    def _sweep(self) -> None:
        result = self.captures.sweep()
        metrics.CAPTURE_BYTES.set(result["bytes"])
        for reason in ("age", "size"):
            if result[reason]:
                metrics.CAPTURE_REMOVED.labels(reason).inc(result[reason])

    def refresh_gauges(self) -> None:
        """The drift gauges of the windows that changed; a version no longer loaded has its
        window dropped and its gauges zeroed (multiprocess gauges cannot be removed)."""
        loaded = {(m.name, m.version): m for m in self.registry.served()}
        for key in self.windows.versions():
            if key not in loaded:
                self.windows.drop(key)
                name, version = key[0], str(key[1])
                for kind in ("class_mix", "confidence"):
                    metrics.DRIFT_PSI.labels(name, version, kind).set(0)
                metrics.DRIFTING.labels(name, version).set(0)
                metrics.DRIFT_ANSWERS.labels(name, version).set(0)
        for key in self.windows.changed() & set(loaded):
            model = loaded[key]
            try:
                report = self.windows.report(model, reference_of(self.registry, model))
            except ClassifierError:
                continue
            version = str(model.version)
            metrics.DRIFT_ANSWERS.labels(model.name, version).set(report.answers)
            if report.psi_class_mix is not None:
                metrics.DRIFT_PSI.labels(model.name, version, "class_mix").set(report.psi_class_mix)
                metrics.DRIFT_PSI.labels(model.name, version, "confidence").set(
                    report.psi_confidence
                )
            if report.drifting is not None:
                metrics.DRIFTING.labels(model.name, version).set(int(report.drifting))


def _own(image):
    """A sampled image that holds only its own bytes: pixels are a view of the request's whole
    tensor (up to MAX_IMAGES_PER_REQUEST images), which waiting for the monitor would keep
    alive beyond the bytes counted for the sample."""
    return image.copy() if isinstance(image, np.ndarray) else image


def _nbytes(image) -> int:
    """What a sampled image holds in memory: an Upload's bytes, or pixels."""
    return image.nbytes if isinstance(image, np.ndarray) else len(image.data)
