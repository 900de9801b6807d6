"""The models this worker serves: loaded after fork, warmed up, checked, and hot-swapped.

A poller thread watches the store. A new valid version is loaded off the request path,
warmed up at every batch size and checked on fixed probe inputs before the reference to it
is swapped in one step; requests that already hold the old version finish on it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np

from classifier.errors import ClassifierError, ModelStoreError
from classifier.predictor import Prediction, Predictor
from classifier.runtimes import RuntimeOptions
from classifier.store import ModelStore, VersionStatus, validate_name
from service import metrics
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


@dataclass(frozen=True)
class VersionPolicy:
    """Which valid versions to serve: the newest N ("latest", "latest:N") or a fixed set
    ("specific:1,3"). Requests without a version go to the highest loaded one."""

    latest: int | None = 1
    specific: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        kind, _, arg = text.strip().partition(":")
        try:
            if kind == "latest":
                count = int(arg) if arg else 1
                if count < 1:
                    raise ValueError
                return cls(latest=count)
            if kind == "specific":
                versions = frozenset(int(v) for v in arg.split(",") if v.strip())
                if not versions or min(versions) < 1:
                    raise ValueError
                return cls(latest=None, specific=versions)
        except ValueError:
            pass
        raise ValueError(f"version policy must be latest, latest:N or specific:V1,V2; got {text!r}")

    def select(self, candidates: list[int]) -> set[int]:
        if self.latest is not None:
            return set(sorted(candidates)[-self.latest :])
        return set(candidates) & self.specific


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
    """One model name. `loaded` is replaced, never mutated, so readers need no lock."""

    name: str
    loaded: dict[int, ServedModel] = field(default_factory=dict)
    loading: int | None = None
    error: str | None = None
    scanned: list[VersionStatus] = field(default_factory=list)
    # version -> (fingerprint when it failed, why): retried only when the folder changes
    failures: dict[int, tuple[tuple, str]] = field(default_factory=dict)


class ModelManager:
    """Loads the versions the policy asks for, keeps them fresh, and hands them to requests."""

    def __init__(
        self,
        store: ModelStore,
        default_name: str,
        runtime: RuntimeOptions | None = None,
        batching: BatchingOptions | None = None,
        policy: VersionPolicy | None = None,
        retire_after_s: float = 15.0,
    ) -> None:
        self.store = store
        self.default_name = validate_name(default_name)
        self.runtime = runtime or RuntimeOptions()
        self.batching = batching or BatchingOptions()
        self.policy = policy or VersionPolicy()
        self.retire_after_s = retire_after_s
        self._states: dict[str, ModelState] = {}
        self._checks: dict[tuple[str, int], tuple[tuple, VersionStatus]] = {}
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # -- loading ---------------------------------------------------------------------------

    def load_all(self) -> None:
        """Bring every model in the store (and the default one) in line with the policy."""
        with self._refresh_lock:
            try:
                names = set(self.store.model_names())
            except OSError as exc:
                log.error("cannot list the model store %s: %s", self.store.root, exc)
                names = set()
            for name in sorted(names | {self.default_name} | set(self._states)):
                self._refresh(name)

    def start_polling(self, interval_s: float) -> None:
        """Poll the store every `interval_s` in a daemon thread of this worker."""

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.load_all()
                except Exception:  # the poller must outlive any surprise in the store
                    log.exception("model poll failed")

        self._poller = threading.Thread(target=loop, name="model-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        for state in self._states.values():
            for served in state.loaded.values():
                served.batcher.stop()

    def _refresh(self, name: str) -> None:
        state = self._states.setdefault(name, ModelState(name))
        state.scanned = self._scan(name)
        # A changed folder earns a new try (_scan has just fingerprinted every version).
        for status in state.scanned:
            failure = state.failures.get(status.version)
            if failure and failure[0] != self._checks[(name, status.version)][0]:
                del state.failures[status.version]
        present = {s.version for s in state.scanned}
        while True:
            candidates = [
                s.version for s in state.scanned if s.valid and s.version not in state.failures
            ]
            wanted = self.policy.select(candidates)
            missing = sorted(wanted - set(state.loaded), reverse=True)
            if not missing:
                break
            self._load_version(state, missing[0])
        self._unload(state, wanted, present)
        if state.loaded:
            state.error = None
        else:
            reasons = [f"v{v}: {why}" for v, (_, why) in sorted(state.failures.items())]
            state.error = f"no loadable version of model {name!r}" + (
                f" ({'; '.join(reasons)})" if reasons else f" in {self.store.root}"
            )

    def _scan(self, name: str) -> list[VersionStatus]:
        """store.scan, but a version is re-hashed only when its files changed."""
        try:
            versions = self.store.versions(name)
        except OSError as exc:
            log.error("cannot read the folder of model %s: %s", name, exc)
            return []
        statuses = []
        for version in versions:
            fingerprint = self.store.fingerprint(name, version)
            cached = self._checks.get((name, version))
            if cached is None or cached[0] != fingerprint:
                try:
                    status = VersionStatus(version, self.store.check(name, version), None)
                except ModelStoreError as exc:
                    status = VersionStatus(version, None, exc.message)
                    log.warning("model %s v%d refused: %s", name, version, exc.message)
                cached = (fingerprint, status)
                self._checks[(name, version)] = cached
            statuses.append(cached[1])
        return statuses

    def _load_version(self, state: ModelState, version: int) -> None:
        state.loading = version
        fingerprint = self.store.fingerprint(state.name, version)
        try:
            served = self._serve(self.store.load(state.name, version, self.runtime))
        except ClassifierError as exc:
            state.failures[version] = (fingerprint, exc.message)
            metrics.MODEL_LOADS.labels(state.name, "failure").inc()
            log.error("model %s v%d failed to load: %s", state.name, version, exc.message)
            return
        finally:
            state.loading = None
        state.loaded = {**state.loaded, version: served}  # the swap: one reference assignment
        metrics.MODEL_LOADS.labels(state.name, "success").inc()
        metrics.MODEL_VERSION.labels(state.name).set(max(state.loaded))
        runtime = served.predictor.runtime
        log.info(
            "model %s v%d loaded, checked and warmed up (runtime %s on %s)",
            state.name,
            version,
            runtime.name,
            runtime.device,
        )

    def _unload(self, state: ModelState, wanted: set[int], present: set[int]) -> None:
        """Drop versions the policy no longer wants, but never the last one loaded."""
        keep = {v: s for v, s in state.loaded.items() if v in wanted}
        if not keep and state.loaded:
            newest = max(state.loaded)
            keep = {newest: state.loaded[newest]}
            if newest not in present:
                log.warning(
                    "model %s v%d was removed from the store; serving it from memory "
                    "until another version is ready",
                    state.name,
                    newest,
                )
        for version in set(state.loaded) - set(keep):
            retired = state.loaded[version]
            log.info("model %s v%d unloaded", state.name, version)
            # Requests that already hold it finish first; then its thread ends.
            timer = threading.Timer(self.retire_after_s, retired.batcher.stop)
            timer.daemon = True
            timer.start()
        if len(keep) != len(state.loaded):
            state.loaded = keep
            metrics.MODEL_VERSION.labels(state.name).set(max(keep))

    def _serve(self, predictor: Predictor) -> ServedModel:
        """Check the predictor on probes, warm up every batch size, start its batcher."""
        check_probes(predictor)
        batcher = Batcher(
            predictor.predict_proba,
            max_batch_size=self.batching.max_batch_size,
            timeout_s=self.batching.timeout_s,
            capacity=self.batching.capacity,
            name=f"{predictor.name}-v{predictor.version}",
            on_batch=lambda n, _padded, wait, compute: metrics.observe_batch(
                predictor.name, predictor.version, n, wait, compute
            ),
        )
        batcher.warm_up(predictor.spec.shape)
        return ServedModel(predictor, batcher.start())

    # -- requests --------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._states)

    def get(self, name: str, version: int | None = None) -> ServedModel:
        """The model serving `name` (a given version, or the newest loaded)."""
        state = self._states.get(name)
        if state is None:
            raise ApiError(
                f"model {name!r} not found; served models: {self.names()}",
                code="model_not_found",
                status=404,
            )
        loaded = state.loaded
        if version is None:
            if not loaded:
                raise NotReady(state.error or f"model {name!r} is loading")
            return loaded[max(loaded)]
        if version not in loaded:
            raise ApiError(
                f"version {version} of model {name!r} is not loaded; loaded: {sorted(loaded)}",
                code="version_not_found",
                status=404,
                details={"loaded_versions": sorted(loaded)},
            )
        return loaded[version]

    def ready(self) -> bool:
        state = self._states.get(self.default_name)
        return state is not None and bool(state.loaded)

    def summary(self, name: str) -> dict:
        """What readiness reports: cheap, no scan, no metadata."""
        state = self._states[name]
        return _summary(state, state.loaded)

    def describe(self, name: str) -> dict:
        """Versions with their state, and the serving version's metadata and batching."""
        state = self._states.get(name)
        if state is None:
            raise ApiError(f"model {name!r} not found", code="model_not_found", status=404)
        loaded = state.loaded
        served = loaded[max(loaded)] if loaded else None
        versions = []
        scanned = {s.version: s for s in state.scanned}
        for version in sorted(set(scanned) | set(loaded)):
            status = scanned.get(version)
            entry: dict = {"version": version}
            if version in loaded:
                entry["state"] = AVAILABLE
                if status is None:
                    entry["note"] = "removed from the store; served from memory"
            elif status is not None and status.error is not None:
                entry.update(state=INVALID, error=status.error)
            elif version in state.failures:
                entry.update(state=FAILED, error=state.failures[version][1])
            else:
                entry["state"] = LOADING if state.loading == version else NOT_LOADED
            versions.append(entry)
        return {
            "name": name,
            "default": name == self.default_name,
            **_summary(state, loaded),  # the same snapshot as the rest of this answer
            "versions": versions,
            "runtime": (
                {"name": served.predictor.runtime.name, "device": served.predictor.runtime.device}
                if served
                else None
            ),
            "batching": _batching(served.batcher) if served else None,
            "metadata": served.predictor.metadata.raw if served else None,
        }


def _summary(state: ModelState, loaded: dict[int, ServedModel]) -> dict:
    return {
        "serving_version": max(loaded) if loaded else None,
        "loaded_versions": sorted(loaded),
        "error": state.error,
    }


def _batching(batcher: Batcher) -> dict:
    return {
        "max_batch_size": batcher.max_batch_size,
        "padded_sizes": batcher.sizes,
        "timeout_ms": batcher.timeout_s * 1000,
        "queue_capacity": batcher.capacity,
        "queued": batcher.queued(),
        **batcher.stats.to_dict(),
    }


def check_probes(predictor: Predictor) -> None:
    """A new version must give one finite probability in [0, 1] per fixed probe image."""
    rng = np.random.default_rng(20261130)
    shape = predictor.spec.shape
    probes = np.stack(
        [
            np.zeros(shape, np.uint8),
            np.full(shape, 255, np.uint8),
            rng.integers(0, 256, shape, dtype=np.uint8),
        ]
    )
    out = predictor.predict_proba(probes)
    if (
        out.shape != (len(probes),)
        or not np.all(np.isfinite(out))
        or not np.all((out >= 0.0) & (out <= 1.0))
    ):
        raise ModelStoreError(
            f"{predictor.name} v{predictor.version}: probe check gave {out!r}, "
            f"not {len(probes)} probabilities in [0, 1]",
            code="model_check_failed",
        )
