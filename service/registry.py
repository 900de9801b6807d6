"""The registry: which versions of which models this worker serves, and the swap.

`ModelState.loaded` is replaced, never mutated, so request threads read it without a lock;
the loader (service/loader.py) is the only writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from classifier.batching import Batcher
from classifier.errors import ClassifierError
from classifier.numbers import whole_number
from classifier.predictor import Predictor
from classifier.spec import InputSpec
from classifier.store import VersionStatus, validate_name

# Version states as TensorFlow Serving names them, plus INVALID for folders failing checks.
VERSION_STATES = ("AVAILABLE", "LOADING", "NOT_LOADED", "FAILED", "INVALID")


class ModelNotFound(ClassifierError):
    code = "model_not_found"


class VersionNotFound(ClassifierError):
    code = "version_not_found"


class ModelNotReady(ClassifierError):
    code = "model_not_ready"


@dataclass(frozen=True)
class VersionPolicy:
    """Which valid versions to serve: the newest N ("latest", "latest:N") or a fixed set
    ("specific:1,3"). Requests without a version go to the highest loaded one."""

    latest: int | None = 1
    specific: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        kind, _, arg = text.strip().partition(":")
        if kind == "latest":
            count = whole_number(arg) if arg else 1
            if count is not None and count >= 1:
                return cls(latest=count)
        if kind == "specific":
            numbers = [whole_number(v.strip()) for v in arg.split(",") if v.strip()]
            if numbers and all(n is not None and n >= 1 for n in numbers):
                return cls(latest=None, specific=frozenset(numbers))
        raise ValueError(f"version policy must be latest, latest:N or specific:V1,V2; got {text!r}")

    def select(self, candidates: list[int]) -> set[int]:
        if self.latest is not None:
            return set(sorted(candidates)[-self.latest :])
        return set(candidates) & self.specific


class ServedModel:
    """A loaded version with its batcher (fed only by the data plane, service/dataplane.py)."""

    def __init__(self, predictor: Predictor, batcher: Batcher) -> None:
        self.predictor = predictor
        self.batcher = batcher

    def predict_alone(self, pixels: np.ndarray) -> np.ndarray:
        """Run the model in this thread once its batcher has stopped: for a request that took
        this version before a swap and reached the model after the version retired (a slow
        upload), so that it still finishes on the version it took."""
        return self.batcher.run_here(pixels)

    @property
    def name(self) -> str:
        return self.predictor.name

    @property
    def version(self) -> int:
        return self.predictor.version

    @property
    def spec(self) -> InputSpec:
        return self.predictor.spec


@dataclass
class ModelState:
    """One model name: the versions loaded, and what the last scan and loads found."""

    name: str
    loaded: dict[int, ServedModel] = field(default_factory=dict)
    loading: int | None = None
    error: str | None = None
    scanned: list[VersionStatus] = field(default_factory=list)
    # version -> (fingerprint when it failed, why): retried only when the folder changes
    failures: dict[int, tuple[tuple, str]] = field(default_factory=dict)
    # The classes this name answers with, fixed by its newest valid version when it is first
    # scanned; versions with other classes are never swapped in (reported once each).
    classes: tuple[str, ...] | None = None
    mismatched: set[int] = field(default_factory=set)

    @property
    def serving(self) -> ServedModel | None:
        loaded = self.loaded
        return loaded[max(loaded)] if loaded else None

    def version_state(self, version: int) -> tuple[str, str | None]:
        """The version's state and, for FAILED and INVALID, why."""
        status = next((s for s in self.scanned if s.version == version), None)
        if version in self.loaded:
            return "AVAILABLE", None
        if status is not None and status.error is not None:
            return "INVALID", status.error
        if version in self.failures:
            return "FAILED", self.failures[version][1]
        return ("LOADING" if self.loading == version else "NOT_LOADED"), None


class Registry:
    """Model name -> state; looks up the version a request should use."""

    def __init__(self, default_name: str) -> None:
        self.default_name = validate_name(default_name)
        self._states: dict[str, ModelState] = {}

    def state(self, name: str) -> ModelState:
        """The state of `name`, created on first use (by the loader only)."""
        return self._states.setdefault(name, ModelState(name))

    def names(self) -> list[str]:
        return sorted(self._states)

    def states(self) -> list[ModelState]:
        return [self._states[name] for name in self.names()]

    def find(self, name: str) -> ModelState:
        state = self._states.get(name)
        if state is None:
            raise ModelNotFound(f"model {name!r} not found")
        return state

    def get(self, name: str, version: int | None = None) -> ServedModel:
        """The model serving `name` (a given version, or the newest loaded)."""
        state = self._states.get(name)
        if state is None:
            raise ModelNotFound(f"model {name!r} not found; served models: {self.names()}")
        if version is None:
            served = state.serving
            if served is None:
                raise ModelNotReady(state.error or f"model {name!r} is loading")
            return served
        loaded = state.loaded
        if version not in loaded:
            raise VersionNotFound(
                f"version {version} of model {name!r} is not loaded; loaded: {sorted(loaded)}",
                details={"loaded_versions": sorted(loaded)},
            )
        return loaded[version]

    def ready(self) -> bool:
        state = self._states.get(self.default_name)
        return state is not None and bool(state.loaded)

    @staticmethod
    def swap(state: ModelState, loaded: dict[int, ServedModel]) -> None:
        """Replace the loaded versions in one reference assignment."""
        state.loaded = loaded

    def served(self) -> list[ServedModel]:
        return [served for state in self.states() for served in state.loaded.values()]
