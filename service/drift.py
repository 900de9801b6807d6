"""Drift: do the answers of late look like the serving version's answers on its validation
photos? Per model version, the last DRIFT_WINDOW answers of this worker (the answered class
and the top-class probability), compared with the version's `drift_reference` (recorded at
training time in its metadata) by the population stability index of the class mix and of the
confidence histogram (classifier/drift.py defines both, for training and serving alike).

Each gunicorn worker keeps its own window of the answers it gave: workers share the traffic
at random (the kernel spreads connections), so each window is a sample of the same stream,
and GET /v1/models/<name>/drift reports the window of the worker that answers it. The drift
gauges in /metrics are the highest over the live workers (livemax): an alert fires when any
worker's window drifts. No Flask here.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from classifier import drift
from classifier.metadata import DriftReference
from service.registry import Registry, ServedModel

MIN_ANSWERS = 100  # fewer answers than this (or than the window) say nothing yet: drifting null


@dataclass(frozen=True)
class DriftReport:
    model: str
    version: int
    window: int  # DRIFT_WINDOW
    answers: int  # answers in the window now
    threshold: float
    class_names: tuple[str, ...]
    class_mix: list[float]  # the window's, in class order
    edges: list[float]
    confidence: list[float]  # the window's histogram
    reference: DriftReference | None
    psi_class_mix: float | None
    psi_confidence: float | None
    drifting: bool | None
    note: str | None = None


class DriftWindows:
    """The last `size` answers per (model, version) of this worker."""

    def __init__(self, size: int, threshold: float) -> None:
        self.size = size
        self.threshold = threshold
        self._windows: dict[tuple[str, int], deque] = {}
        self._changed: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def add(self, model: str, version: int, answered: np.ndarray, top: np.ndarray) -> None:
        key = (model, version)
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = deque(maxlen=self.size)
            window.extend(zip(answered.tolist(), top.tolist(), strict=True))
            self._changed.add(key)

    def changed(self) -> set[tuple[str, int]]:
        """The windows that took answers since the last call."""
        with self._lock:
            changed, self._changed = self._changed, set()
        return changed

    def drop(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._windows.pop(key, None)

    def versions(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._windows)

    def report(self, model: ServedModel, reference: DriftReference | None) -> DriftReport:
        with self._lock:
            entries = list(self._windows.get((model.name, model.version), ()))
        names = model.predictor.class_names
        answered = np.array([a for a, _ in entries], dtype=np.int64)
        top = np.array([t for _, t in entries], dtype=np.float64)
        edges = (
            list(reference.confidence.edges) if reference else drift.confidence_edges(len(names))
        )
        mix = drift.class_mix(answered, len(names))
        confidence = drift.histogram(top, edges)
        psi_mix = psi_conf = drifting = note = None
        if reference is None:
            note = (
                f"version {model.version} of {model.name} has no drift reference in its "
                "metadata (published before training recorded one): add it with python -m "
                "training.drift_reference"
            )
        elif entries:
            psi_mix = drift.psi([reference.class_mix[n] for n in names], mix)
            psi_conf = drift.psi(reference.confidence.fractions, confidence)
            if len(entries) >= min(MIN_ANSWERS, self.size):
                drifting = max(psi_mix, psi_conf) >= self.threshold
        if reference is not None and drifting is None:
            note = (
                f"{len(entries)} answers so far; drift is judged from {min(MIN_ANSWERS, self.size)}"
            )
        return DriftReport(
            model=model.name,
            version=model.version,
            window=self.size,
            answers=len(entries),
            threshold=self.threshold,
            class_names=names,
            class_mix=mix,
            edges=edges,
            confidence=confidence,
            reference=reference,
            psi_class_mix=psi_mix,
            psi_confidence=psi_conf,
            drifting=drifting,
            note=note,
        )


def reference_of(registry: Registry, model: ServedModel) -> DriftReference | None:
    """The version's drift reference as the store has it now: a reference recorded after the
    version was loaded (training.drift_reference) counts from the worker's next scan."""
    for status in registry.find(model.name).scanned:
        if status.version == model.version and status.metadata is not None:
            return status.metadata.drift_reference or model.predictor.metadata.drift_reference
    return model.predictor.metadata.drift_reference
