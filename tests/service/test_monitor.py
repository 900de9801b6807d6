"""The monitor after each answer: the images sampled for capture wait in memory within a bound,
whatever the feedback volume does; the answers still count."""

from __future__ import annotations

import gc
import threading
import weakref
from types import SimpleNamespace

import numpy as np
from prometheus_client import REGISTRY

from service import monitor as monitor_module
from service.capture import CaptureStore
from service.dataplane import Upload
from service.drift import DriftWindows
from service.monitor import Monitor
from service.registry import Registry
from tests.helpers import jpeg_bytes


class StalledStore(CaptureStore):
    """A feedback volume that does not answer until `go` is set."""

    def __init__(self, root) -> None:
        super().__init__(root, max_bytes=10**9, max_age_s=3600)
        self.go = threading.Event()
        self.started = threading.Event()
        self.written: list[str] = []

    def write(self, capture, data: bytes) -> int:
        self.started.set()
        self.go.wait(10)
        self.written.append(capture.request_id)
        return len(data)

    def sweep(self, now=None) -> dict[str, int]:
        return {"bytes": 0, "age": 0, "size": 0}


def served(name: str) -> SimpleNamespace:
    metadata = SimpleNamespace(decision_threshold=0.5)
    predictor = SimpleNamespace(metadata=metadata, class_names=("cats", "dogs"))
    return SimpleNamespace(name=name, version=1, predictor=predictor)


def captured(model: str, result: str) -> float:
    value = REGISTRY.get_sample_value("capture_images_total", {"model": model, "result": result})
    return value or 0.0


def test_sampled_images_waiting_for_a_stalled_volume_stay_within_their_bytes(tmp_path, monkeypatch):
    photo = jpeg_bytes()
    monkeypatch.setattr(monitor_module, "CAPTURE_PENDING_BYTES", 3 * len(photo))
    store = StalledStore(tmp_path)
    monitor = Monitor(Registry("capture-bound"), DriftWindows(100, 0.2), store, capture_rate=1.0)
    model = served("capture-bound")
    probs = np.array([[0.3, 0.7]])
    monitor.answered(model, [Upload(photo)], probs)
    assert store.started.wait(10)  # the monitor thread is stuck writing the first
    for _ in range(5):
        monitor.answered(model, [Upload(photo)], probs)
    assert monitor._pending == 3 * len(photo)  # the first (being written) and two waiting
    assert captured("capture-bound", "dropped") == 3
    store.go.set()
    assert monitor.wait_idle()
    assert len(store.written) == 3 and monitor._pending == 0
    assert captured("capture-bound", "stored") == 3
    # every answer counted, captured or not
    answered = REGISTRY.get_sample_value(
        "predictions_total", {"model": "capture-bound", "version": "1", "label": "dogs"}
    )
    assert answered == 6
    monitor.answered(model, [Upload(photo)], probs)  # room again
    assert monitor.wait_idle() and len(store.written) == 4


def test_a_sampled_image_of_a_tensor_holds_only_its_own_pixels(tmp_path, monkeypatch):
    """Pixels sent as a tensor (V2, TensorFlow Serving) are one array for the whole request:
    a sample waiting for a stalled volume keeps its own image, counted in the pending bytes,
    not the request's whole tensor (before: 64 MiB counted held 1.5 GB)."""
    store = StalledStore(tmp_path)
    monitor = Monitor(Registry("capture-own"), DriftWindows(100, 0.2), store, capture_rate=0.5)
    model = served("capture-own")
    draws = iter([0.0] + [0.9] * 63 + [0.0] + [0.9] * 63)  # the first image of each sampled
    monkeypatch.setattr(monitor_module.random, "random", lambda: next(draws))
    probs = np.tile([[0.3, 0.7]], (64, 1))
    monitor.answered(model, np.zeros((64, 150, 150, 3), np.float32), probs)
    assert store.started.wait(10)  # the first is being written: the second waits
    batch = np.zeros((64, 150, 150, 3), np.float32)
    monitor.answered(model, batch, probs)
    held = weakref.ref(batch)
    del batch
    gc.collect()
    assert held() is None  # the request's tensor went with the request
    assert monitor._pending == 2 * 150 * 150 * 3 * 4
    store.go.set()
    assert monitor.wait_idle() and len(store.written) == 2


def test_answers_queued_together_are_observed_together_each_to_its_own_version(tmp_path):
    """The monitor takes every answer waiting at once: each served version still counts its
    own answers, fills its own window, and each capture keeps the label of its own image."""
    store = StalledStore(tmp_path)
    labels: list[tuple[str, str]] = []
    write = store.write
    store.write = lambda capture, data: (
        labels.append((capture.model, capture.label)) or write(capture, data)
    )
    windows = DriftWindows(100, 0.2)
    monitor = Monitor(Registry("together-a"), windows, store, capture_rate=1.0)
    monitor._next_refresh = float("inf")  # versions not in the registry: windows kept
    added: list[tuple[str, int]] = []
    add = windows.add
    windows.add = lambda name, version, answered, top: (
        added.append((name, len(top))) or add(name, version, answered, top)
    )
    a, b = served("together-a"), served("together-b")
    photo = jpeg_bytes()
    monitor.answered(a, [Upload(photo)], np.array([[0.9, 0.1]]))
    assert store.started.wait(10)  # the monitor is held: what follows queues up
    monitor.capture_rate = 0.0
    monitor.answered(b, [None, None], np.array([[0.2, 0.8], [0.6, 0.4]]))
    monitor.answered(a, [None], np.array([[0.1, 0.9]]))
    monitor.capture_rate = 1.0
    monitor.answered(b, [Upload(photo), Upload(photo)], np.array([[0.7, 0.3], [0.1, 0.9]]))
    assert monitor._queue.qsize() == 3
    store.go.set()
    assert monitor.wait_idle()

    def count(model: str, label: str) -> float:
        labels = {"model": model, "version": "1", "label": label}
        return REGISTRY.get_sample_value("predictions_total", labels) or 0.0

    assert (count("together-a", "cats"), count("together-a", "dogs")) == (1, 1)
    assert (count("together-b", "cats"), count("together-b", "dogs")) == (2, 2)
    assert len(windows._windows[("together-a", 1)]) == 2
    assert len(windows._windows[("together-b", 1)]) == 4
    assert labels == [("together-a", "cats"), ("together-b", "cats"), ("together-b", "dogs")]
    # one pass for the first answer, then one per version for the three that waited
    assert added == [("together-a", 1), ("together-b", 4), ("together-a", 1)]


def test_one_versions_failure_leaves_the_others_answers_counted(tmp_path):
    """Answers taken together are observed per version: one that fails (here a model without
    class names) is logged, and the others' answers still count."""
    store = StalledStore(tmp_path)
    monitor = Monitor(Registry("apart-good"), DriftWindows(100, 0.2), store, capture_rate=1.0)
    monitor._next_refresh = float("inf")
    good = served("apart-good")
    broken = served("apart-broken")
    broken.predictor.class_names = ()
    monitor.answered(good, [Upload(jpeg_bytes())], np.array([[0.9, 0.1]]))
    assert store.started.wait(10)  # held: the next two queue up and are taken together
    monitor.capture_rate = 0.0
    monitor.answered(broken, [None], np.array([[0.2, 0.8]]))
    monitor.answered(good, [None], np.array([[0.2, 0.8]]))
    store.go.set()
    assert monitor.wait_idle()
    labels = {"model": "apart-good", "version": "1", "label": "dogs"}
    assert REGISTRY.get_sample_value("predictions_total", labels) == 1
