"""The models this worker serves: loaded once per worker (after fork), warmed up, then shared."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np

from classifier.errors import ClassifierError, ModelStoreError
from classifier.predictor import Predictor
from classifier.store import ModelStore, VersionStatus, validate_name
from service.errors import ApiError, NotReady

log = logging.getLogger(__name__)

# States as TensorFlow Serving names them, plus INVALID for folders that fail their checks.
AVAILABLE, LOADING, FAILED, INVALID, NOT_LOADED = (
    "AVAILABLE",
    "LOADING",
    "FAILED",
    "INVALID",
    "NOT_LOADED",
)


@dataclass
class ModelState:
    name: str
    predictor: Predictor | None = None
    loading: bool = False
    error: str | None = None
    scanned: list[VersionStatus] = field(default_factory=list)
    load_errors: dict[int, str] = field(default_factory=dict)


class ModelManager:
    """Loads the newest valid version of each model in the store and hands out predictors."""

    def __init__(self, store: ModelStore, default_name: str) -> None:
        self.store = store
        self.default_name = validate_name(default_name)
        self._states: dict[str, ModelState] = {}
        self._lock = threading.Lock()

    def load_all(self) -> None:
        """Load every model in the store (the default one even if its folder is missing)."""
        names = set(self.store.model_names()) | {self.default_name}
        for name in sorted(names):
            self.load(name)

    def load(self, name: str) -> ModelState:
        """Load and warm up the newest version that passes its checks; older ones are fallbacks."""
        state = self._state(name)
        state.loading = True
        try:
            state.scanned = self.store.scan(name)
            state.load_errors = {}
            for status in reversed(state.scanned):
                if status.metadata is None:
                    log.warning("model %s v%d refused: %s", name, status.version, status.error)
                    continue
                try:
                    predictor = self.store.load(name, status.version)
                    warm_up(predictor)
                except ClassifierError as exc:
                    state.load_errors[status.version] = exc.message
                    log.error("model %s v%d failed to load: %s", name, status.version, exc.message)
                    continue
                state.predictor, state.error = predictor, None
                log.info("model %s v%d loaded and warmed up", name, status.version)
                return state
            state.error = f"no loadable version of model {name!r} in {self.store.root}"
            log.error(state.error)
            return state
        finally:
            state.loading = False

    def _state(self, name: str) -> ModelState:
        with self._lock:
            return self._states.setdefault(name, ModelState(name))

    def names(self) -> list[str]:
        return sorted(self._states)

    def get(self, name: str) -> Predictor:
        """The predictor serving `name`; 404 for an unknown model, 503 while none is loaded."""
        state = self._states.get(name)
        if state is None:
            raise ApiError(
                f"model {name!r} not found; served models: {self.names()}",
                code="model_not_found",
                status=404,
            )
        if state.predictor is None:
            raise NotReady(state.error or f"model {name!r} is loading")
        return state.predictor

    def ready(self) -> bool:
        state = self._states.get(self.default_name)
        return state is not None and state.predictor is not None

    def describe(self, name: str) -> dict:
        """Versions with their state, and the serving version's metadata."""
        state = self._states.get(name)
        if state is None:
            raise ApiError(f"model {name!r} not found", code="model_not_found", status=404)
        serving = state.predictor.version if state.predictor else None
        versions = []
        for status in state.scanned:
            entry: dict = {"version": status.version}
            if status.version == serving:
                entry["state"] = AVAILABLE
            elif status.error is not None:
                entry.update(state=INVALID, error=status.error)
            elif status.version in state.load_errors:
                entry.update(state=FAILED, error=state.load_errors[status.version])
            else:
                entry["state"] = LOADING if state.loading else NOT_LOADED
            versions.append(entry)
        return {
            "name": name,
            "default": name == self.default_name,
            "serving_version": serving,
            "versions": versions,
            "error": state.error,
            "metadata": state.predictor.metadata.raw if state.predictor else None,
        }


def warm_up(predictor: Predictor) -> None:
    """Run one prediction so the first request does not pay for graph building."""
    probe = np.zeros((1, *predictor.spec.shape), dtype=np.uint8)
    out = predictor.predict_proba(probe)
    if out.shape != (1,) or not np.all(np.isfinite(out)) or not (0.0 <= out[0] <= 1.0):
        raise ModelStoreError(
            f"{predictor.name} v{predictor.version}: warm-up gave {out!r}, not one probability",
            code="model_check_failed",
        )
