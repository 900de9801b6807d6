"""The loader: brings the registry in line with the store, after fork and then by polling.

A new valid version is loaded off the request path, checked on fixed probe inputs and warmed
up at every batch size before the registry swaps it in; requests that already hold the old
version finish on it, and its batcher stops after the request deadline.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from classifier.batching import Batcher
from classifier.errors import ClassifierError, ModelStoreError
from classifier.filesystems import rename_refusal
from classifier.predictor import Predictor, load_predictor
from classifier.runtimes import RuntimeOptions, probe_images
from classifier.store import UNREADABLE, ModelStore, VersionStatus
from service import metrics
from service.registry import ModelState, Registry, ServedModel, VersionPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchingOptions:
    max_batch_size: int = 16
    timeout_s: float = 0.0
    capacity: int = 256


class Loader:
    """Loads the versions the policy asks for into the registry, and keeps them fresh."""

    def __init__(
        self,
        store: ModelStore,
        registry: Registry,
        runtime: RuntimeOptions | None = None,
        batching: BatchingOptions | None = None,
        policy: VersionPolicy | None = None,
        retire_after_s: float = 15.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.runtime = runtime or RuntimeOptions()
        self.batching = batching or BatchingOptions()
        self.policy = policy or VersionPolicy()
        self.retire_after_s = retire_after_s
        self._checks: dict[tuple[str, int], tuple[tuple, VersionStatus]] = {}
        self._unreadable: set[tuple[str, int]] = set()  # checked again at every scan
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()

    def warn_about_the_filesystem(self) -> None:
        """Readers are safe anywhere, but say so where publishers would not be."""
        refusal = rename_refusal(self.store.root)
        if refusal:
            log.warning("%s (serving works; publishing there is refused)", refusal)

    def load_all(self) -> None:
        """Bring every model in the store (and the default one) in line with the policy."""
        with self._refresh_lock:
            try:
                names = set(self.store.model_names())
            except OSError as exc:
                log.error("cannot list the model store %s: %s", self.store.root, exc)
                names = set()
            for name in sorted(names | {self.registry.default_name} | set(self.registry.names())):
                self._refresh(self.registry.state(name))

    def start_polling(self, interval_s: float) -> None:
        """Poll the store every `interval_s` in a daemon thread of this worker."""

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.load_all()
                except Exception:  # the poller must outlive any surprise in the store
                    log.exception("model poll failed")

        threading.Thread(target=loop, name="model-poller", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        for served in self.registry.served():
            served.batcher.stop()

    def _refresh(self, state: ModelState) -> None:
        scanned = self._scan(state.name)
        if scanned is None:  # unreadable for now: not emptied, so nothing is unloaded
            if not state.loaded:
                state.error = f"cannot read the folder of model {state.name!r} in {self.store.root}"
            return
        state.scanned = self._same_classes(state, scanned)
        # A changed folder earns a new try (_scan has just fingerprinted every version).
        for status in state.scanned:
            failure = state.failures.get(status.version)
            if failure and failure[0] != self._checks[(state.name, status.version)][0]:
                del state.failures[status.version]
        present = {s.version for s in state.scanned}
        tried: set[int] = set()  # once per refresh: a folder changing under the load waits
        while True:
            candidates = [
                s.version for s in state.scanned if s.valid and s.version not in state.failures
            ]
            wanted = self.policy.select(candidates)
            changed = self._changed(state)
            missing = sorted(((wanted - set(state.loaded)) | changed) - tried, reverse=True)
            if not missing:
                break
            tried.add(missing[0])
            self._load_version(state, missing[0])
        self._unload(state, wanted, present)
        if state.loaded:
            state.error = None
        else:
            reasons = [f"v{v}: {why}" for v, (_, why) in sorted(state.failures.items())]
            state.error = f"no loadable version of model {state.name!r}" + (
                f" ({'; '.join(reasons)})" if reasons else f" in {self.store.root}"
            )

    def _changed(self, state: ModelState) -> set[int]:
        """Loaded versions whose folder now holds other model files (their checksums in the
        metadata): a number published again after its folder was deleted must not keep
        answering with the old model. Amended metadata (drift_reference) is not a change."""
        files = {
            s.version: s.metadata.files
            for s in state.scanned
            if s.metadata is not None and s.version not in state.failures
        }
        return {
            version
            for version, served in state.loaded.items()
            if version in files and files[version] != served.predictor.metadata.files
        }

    def _same_classes(self, state: ModelState, scanned: list[VersionStatus]) -> list[VersionStatus]:
        """Versions whose classes differ from the ones this name answers with become INVALID:
        swapping one in would change every answer under the model's users."""
        valid = [s for s in scanned if s.metadata is not None]
        if state.classes is None and valid:
            state.classes = valid[-1].metadata.class_names  # the newest decides, once
        checked = []
        for status in scanned:
            if status.metadata is None or status.metadata.class_names == state.classes:
                checked.append(status)
                continue
            reason = (
                f"classes {list(status.metadata.class_names)} differ from the model's "
                f"{list(state.classes)}: publish them under a new model name"
            )
            if status.version not in state.mismatched:
                state.mismatched.add(status.version)
                metrics.MODEL_CLASS_MISMATCH.labels(state.name).inc()
                log.error("model %s v%d refused: %s", state.name, status.version, reason)
            checked.append(VersionStatus(status.version, None, reason))
        return checked

    def _scan(self, name: str) -> list[VersionStatus] | None:
        """store.scan, but a version is re-hashed only when its files changed; None where the
        model's folder cannot be listed (EACCES, EIO: a volume's hiccup is not a deletion)."""
        try:
            versions = self.store.versions(name)
        except OSError as exc:
            log.error("cannot read the folder of model %s: %s", name, exc)
            return None
        statuses = []
        for version in versions:
            fingerprint = self.store.fingerprint(name, version)
            key = (name, version)
            cached = self._checks.get(key)
            if cached is None or cached[0] != fingerprint or key in self._unreadable:
                self._unreadable.discard(key)
                try:
                    status = VersionStatus(version, self.store.check(name, version), None)
                except ModelStoreError as exc:
                    status = VersionStatus(version, None, exc.message)
                    if exc.code == UNREADABLE:  # a permission fixed with chmod keeps the mtime
                        self._unreadable.add(key)
                    if cached is None or cached[1].error != exc.message:
                        log.warning("model %s v%d refused: %s", name, version, exc.message)
                except Exception as exc:  # one odd folder must not stop the others' scan
                    status = VersionStatus(version, None, reason(exc))
                    log.exception("model %s v%d refused", name, version)
                cached = (fingerprint, status)
                self._checks[key] = cached
            statuses.append(cached[1])
        return statuses

    def _load_version(self, state: ModelState, version: int) -> None:
        state.loading = version
        fingerprint = self.store.fingerprint(state.name, version)
        try:
            served = self._serve(load_predictor(self.store, state.name, version, self.runtime))
        except Exception as exc:  # any failure: this version is skipped, the service goes on
            why = reason(exc)
            state.failures[version] = (fingerprint, why)
            metrics.MODEL_LOADS.labels(state.name, "failure").inc()
            log.error(
                "model %s v%d failed to load: %s",
                state.name,
                version,
                why,
                exc_info=not isinstance(exc, ClassifierError),
            )
            return
        finally:
            state.loading = None
        replaced = state.loaded.get(version)
        self.registry.swap(state, {**state.loaded, version: served})
        if replaced is not None:  # the same number, other files: the old one retires
            self._retire(replaced)
        metrics.MODEL_LOADS.labels(state.name, "success").inc()
        metrics.MODEL_VERSION.labels(state.name).set(max(state.loaded))
        runtime = served.predictor.runtime
        metrics.MODEL_RUNTIME.labels(
            state.name, str(version), runtime.name, runtime.precision, runtime.device
        ).set(1)
        log.info(
            "model %s v%d loaded, checked and warmed up (runtime %s on %s in %s)",
            state.name,
            version,
            runtime.name,
            runtime.device,
            runtime.precision,
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
            log.info("model %s v%d unloaded", state.name, version)
            self._retire(state.loaded[version])
        if len(keep) != len(state.loaded):
            self.registry.swap(state, keep)
            metrics.MODEL_VERSION.labels(state.name).set(max(keep))

    def _retire(self, served: ServedModel) -> None:
        """Requests that already hold it finish first; then its thread ends. Its runtime
        series goes to 0 ("1 for each loaded version")."""
        runtime, predictor = served.predictor.runtime, served.predictor
        metrics.MODEL_RUNTIME.labels(
            predictor.name, str(predictor.version), runtime.name, runtime.precision, runtime.device
        ).set(0)
        timer = threading.Timer(self.retire_after_s, served.batcher.stop)
        timer.daemon = True
        timer.start()

    def _serve(self, predictor: Predictor) -> ServedModel:
        """Check the predictor on probes, warm up every batch size, start its batcher."""
        check_probes(predictor)
        batcher = Batcher(
            predictor.predict,
            max_batch_size=self.batching.max_batch_size,
            timeout_s=self.batching.timeout_s,
            capacity=self.batching.capacity,
            name=f"{predictor.name}-v{predictor.version}",
            on_batch=lambda n, _padded, wait, compute: metrics.observe_batch(
                predictor.name, predictor.version, n, wait, compute
            ),
            every_size=predictor.runtime.any_batch_size,
            lanes=predictor.runtime.lanes,
        )
        batcher.warm_up(predictor.spec.shape)
        return ServedModel(predictor, batcher.start())


def reason(exc: Exception) -> str:
    """Why a version was refused: a coded error's message, else the exception as it is."""
    return exc.message if isinstance(exc, ClassifierError) else f"{type(exc).__name__}: {exc}"


def check_probes(predictor: Predictor) -> None:
    """A new version must give, per fixed probe image, one finite probability in [0, 1] per
    class, summing to 1."""
    probes = probe_images(predictor.spec.shape)
    out = predictor.predict(probes)
    classes = len(predictor.class_names)
    if (
        out.shape != (len(probes), classes)
        or not np.all(np.isfinite(out))
        or not np.all((out >= 0.0) & (out <= 1.0))
        or not np.allclose(out.sum(axis=1), 1.0, atol=1e-3)
    ):
        raise ModelStoreError(
            f"{predictor.name} v{predictor.version}: probe check gave {out!r}, not "
            f"{len(probes)} rows of {classes} probabilities in [0, 1] summing to 1",
            code="model_check_failed",
        )
