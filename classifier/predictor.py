"""A typed facade over a loaded model version: raw 0-255 pixels in, class probabilities out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.errors import ModelStoreError
from classifier.metadata import ModelMetadata
from classifier.runtimes import Runtime, RuntimeOptions, answers, load_runtime
from classifier.spec import InputSpec
from classifier.store import ModelStore

PIXEL_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]


class Predictor:
    """One model version on one runtime: images in, class probabilities out."""

    def __init__(self, runtime: Runtime, metadata: ModelMetadata) -> None:
        self.runtime = runtime
        self.metadata = metadata

    @classmethod
    def load(
        cls, folder: Path, metadata: ModelMetadata, options: RuntimeOptions | None = None
    ) -> Predictor:
        """Load in safe mode (no arbitrary code) on the runtime chosen by `options`."""
        return cls(load_runtime(folder, metadata, options or RuntimeOptions()), metadata)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> int:
        return self.metadata.version

    @property
    def spec(self) -> InputSpec:
        return self.metadata.input_spec

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.class_names

    def predict(self, images: np.ndarray, alone: bool = True) -> np.ndarray:
        """Class probabilities (n, C) in class order for a batch (n, height, width, 3) of
        uint8, or float32 pixels in the same 0-255 range (a client's own tensors); `alone`
        False: the call overlaps others, on one of the runtime's lanes."""
        if (
            images.dtype not in PIXEL_DTYPES
            or images.ndim != 4
            or images.shape[1:] != self.spec.shape
        ):
            raise ValueError(
                f"expected uint8 or float32 images of shape (n, {self.spec.shape}), "
                f"got {images.dtype} {images.shape}"
            )
        if len(images) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float64)
        # float64, so that 1 - p of a sigmoid is exact, as it always was on the wire
        out = self.runtime(images, alone=alone)
        out = np.asarray(out, dtype=np.float64).reshape(len(images), -1)
        if self.metadata.activation == "sigmoid":
            return np.concatenate([1.0 - out, out], axis=1)
        return out

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """P(class_names[1]) of a two-class model (n,)."""
        if len(self.class_names) != 2:
            raise ValueError(f"{self.name} has {len(self.class_names)} classes: use predict()")
        return self.predict(images)[:, 1]

    def labels(self, probs: np.ndarray) -> list[str]:
        """A sigmoid's two classes: the second from the threshold up; a softmax: the most
        probable."""
        indices = answers(probs, self.metadata.decision_threshold)
        return [self.class_names[int(i)] for i in indices]

    def to_predictions(self, probs: np.ndarray) -> list[Prediction]:
        """One Prediction per row of class probabilities (n, C)."""
        names = self.class_names
        return [
            Prediction(label, dict(zip(names, map(float, row), strict=True)))
            for label, row in zip(self.labels(probs), probs, strict=True)
        ]


def top_classes(probabilities: dict[str, float], k: int) -> list[tuple[str, float]]:
    """The k most probable classes, best first (ties in class order): `?top_k` of the
    service's answers and the client's `top_k`."""
    return sorted(probabilities.items(), key=lambda item: -item[1])[:k]


def load_predictor(
    store: ModelStore,
    name: str,
    version: int | None = None,
    options: RuntimeOptions | None = None,
) -> Predictor:
    """Check a stored version (the newest valid one by default) and load it as a Predictor."""
    if version is None:
        metadata = store.latest_valid(name)
        if metadata is None:
            raise ModelStoreError(
                f"no valid version of model {name!r} in {store.root.absolute()}",
                code="model_not_found",
            )
    else:
        versions = store.versions(name)
        if version not in versions:
            there = ", ".join(map(str, versions)) if versions else "none"
            raise ModelStoreError(
                f"model {name!r} has no version {version} in {store.root.absolute()} (versions there: "
                f"{there})",
                code="version_not_found",
            )
        metadata = store.check(name, version)
    return Predictor.load(store.model_dir(name) / str(metadata.version), metadata, options)
