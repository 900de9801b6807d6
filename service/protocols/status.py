"""What the status routes of this service's API and of TensorFlow Serving's say of a model,
built from the registry's state."""

from __future__ import annotations

from classifier.batching import Batcher
from service.protocols import own_schemas as own
from service.protocols import tfserving_schemas as tf
from service.registry import ModelState

# TensorFlow Serving's names for this service's version states.
TF_STATES = {"AVAILABLE": "AVAILABLE", "LOADING": "LOADING", "NOT_LOADED": "START"}


def summary(state: ModelState) -> own.ModelSummary:
    """What readiness reports: cheap, no scan, no metadata."""
    loaded = state.loaded
    return own.ModelSummary(
        serving_version=max(loaded) if loaded else None,
        loaded_versions=sorted(loaded),
        error=state.error,
    )


def versions(state: ModelState) -> list[own.VersionInfo]:
    loaded = dict(state.loaded)
    scanned = {s.version for s in state.scanned}
    entries = []
    for version in sorted(scanned | set(loaded)):
        kind, error = ("AVAILABLE", None) if version in loaded else state.version_state(version)
        entry = own.VersionInfo(version=version, state=kind)
        if error is not None:
            entry.error = error
        if version in loaded and version not in scanned:
            entry.note = "removed from the store; served from memory"
        entries.append(entry)
    return entries


def tf_version_status(entry: own.VersionInfo) -> tf.TfVersionStatus:
    """One version as TensorFlow Serving's GetModelStatus reports it."""
    failed = entry.state in ("FAILED", "INVALID")
    return tf.TfVersionStatus(
        version=str(entry.version),
        state="END" if failed else TF_STATES[entry.state],
        status={
            "error_code": "UNKNOWN" if failed else "OK",
            "error_message": entry.error or "",
        },
    )


def describe(state: ModelState, default_name: str) -> own.ModelStatus:
    """Versions with their state, and the serving version's runtime, batching and metadata."""
    loaded = dict(state.loaded)  # one snapshot for the whole answer
    served = loaded[max(loaded)] if loaded else None
    entries = versions(state)
    runtime = served.predictor.runtime if served else None
    return own.ModelStatus(
        name=state.name,
        ready=served is not None,
        default=state.name == default_name,
        serving_version=max(loaded) if loaded else None,
        loaded_versions=sorted(loaded),
        error=state.error,
        versions=entries,
        runtime=_runtime(runtime) if runtime else None,
        batching=_batching(served.batcher) if served else None,
        metadata=served.predictor.metadata.raw if served else None,
        model_version_status=[tf_version_status(entry) for entry in reversed(entries)],
    )


def _runtime(runtime) -> own.RuntimeInfo:
    info = own.RuntimeInfo(name=runtime.name, device=runtime.device, precision=runtime.precision)
    if getattr(runtime, "note", None):
        info.note = runtime.note
    return info


def _batching(batcher: Batcher) -> own.BatchingInfo:
    return own.BatchingInfo(
        max_batch_size=batcher.max_batch_size,
        padded_sizes=batcher.sizes,
        timeout_ms=batcher.timeout_s * 1000,
        lanes=batcher.lanes,
        queue_capacity=batcher.capacity,
        queued=batcher.queued(),
        **batcher.stats.to_dict(),
    )
