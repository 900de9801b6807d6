"""The models this worker serves: loaded once per worker (after fork), warmed up, then shared."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np

from classifier.errors import ClassifierError, ModelStoreError
from classifier.predictor import Prediction, Predictor
from classifier.runtimes import RuntimeOptions
from classifier.store import ModelStore, VersionStatus, validate_name
from service.batching import Batcher
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


@dataclass(frozen=True)
class BatchingOptions:
    max_batch_size: int = 16
    timeout_s: float = 0.0
    capacity: int = 256


class ServedModel:
    """A loaded version with its batcher: what a request talks to."""

    def __init__(self, predictor: Predictor, batcher: Batcher) -> None:
        self.predictor = predictor
        self.batcher = batcher

    @property
    def name(self) -> str:
        return self.predictor.name

    @property
    def version(self) -> int:
        return self.predictor.version

    @property
    def spec(self):
        return self.predictor.spec

    def predict(self, images: np.ndarray, timeout_s: float) -> list[Prediction]:
        return self.predictor.to_predictions(self.batcher.predict(images, timeout_s))


@dataclass
class ModelState:
    name: str
    served: ServedModel | None = None
    loading: bool = False
    error: str | None = None
    scanned: list[VersionStatus] = field(default_factory=list)
    load_errors: dict[int, str] = field(default_factory=dict)


class ModelManager:
    """Loads the newest valid version of each model in the store and hands out predictors."""

    def __init__(
        self,
        store: ModelStore,
        default_name: str,
        runtime: RuntimeOptions | None = None,
        batching: BatchingOptions | None = None,
    ) -> None:
        self.store = store
        self.default_name = validate_name(default_name)
        self.runtime = runtime or RuntimeOptions()
        self.batching = batching or BatchingOptions()
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
                    served = self._serve(self.store.load(name, status.version, self.runtime))
                except ClassifierError as exc:
                    state.load_errors[status.version] = exc.message
                    log.error("model %s v%d failed to load: %s", name, status.version, exc.message)
                    continue
                old, state.served, state.error = state.served, served, None
                if old is not None:
                    old.batcher.stop()
                log.info("model %s v%d loaded and warmed up", name, status.version)
                return state
            state.error = f"no loadable version of model {name!r} in {self.store.root}"
            log.error(state.error)
            return state
        finally:
            state.loading = False

    def _serve(self, predictor: Predictor) -> ServedModel:
        """Check the predictor on a probe, warm up every batch size, start its batcher."""
        warm_up(predictor)
        batcher = Batcher(
            predictor.predict_proba,
            max_batch_size=self.batching.max_batch_size,
            timeout_s=self.batching.timeout_s,
            capacity=self.batching.capacity,
            name=f"{predictor.name}-v{predictor.version}",
        )
        batcher.warm_up(predictor.spec.shape)
        return ServedModel(predictor, batcher.start())

    def stop(self) -> None:
        for state in self._states.values():
            if state.served is not None:
                state.served.batcher.stop()

    def _state(self, name: str) -> ModelState:
        with self._lock:
            return self._states.setdefault(name, ModelState(name))

    def names(self) -> list[str]:
        return sorted(self._states)

    def get(self, name: str) -> ServedModel:
        """The model serving `name`; 404 for an unknown model, 503 while none is loaded."""
        state = self._states.get(name)
        if state is None:
            raise ApiError(
                f"model {name!r} not found; served models: {self.names()}",
                code="model_not_found",
                status=404,
            )
        if state.served is None:
            raise NotReady(state.error or f"model {name!r} is loading")
        return state.served

    def ready(self) -> bool:
        state = self._states.get(self.default_name)
        return state is not None and state.served is not None

    def describe(self, name: str) -> dict:
        """Versions with their state, and the serving version's metadata."""
        state = self._states.get(name)
        if state is None:
            raise ApiError(f"model {name!r} not found", code="model_not_found", status=404)
        served = state.served
        serving = served.version if served else None
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
            "runtime": (
                {"name": served.predictor.runtime.name, "device": served.predictor.runtime.device}
                if served
                else None
            ),
            "batching": (
                {
                    "max_batch_size": served.batcher.max_batch_size,
                    "padded_sizes": served.batcher.sizes,
                    "timeout_ms": served.batcher.timeout_s * 1000,
                    "queue_capacity": served.batcher.capacity,
                    "queued": served.batcher.queued(),
                    **served.batcher.stats.to_dict(),
                }
                if served
                else None
            ),
            "metadata": served.predictor.metadata.raw if served else None,
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
