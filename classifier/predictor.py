"""A typed facade over a loaded model version: raw 0-255 pixels in, class probabilities out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.errors import ModelStoreError
from classifier.metadata import ModelMetadata
from classifier.runtimes import Runtime, RuntimeOptions, load_runtime
from classifier.spec import InputSpec
from classifier.store import ModelStore

PIXEL_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]


class Predictor:
    """One model version on one runtime. The model's sigmoid output is P(class_names[1])."""

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

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """P(class_names[1]) for a batch of shape (n, height, width, 3): uint8, or float32
        pixels in the same 0-255 range (a client's own tensors)."""
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
            return np.zeros((0,), dtype=np.float32)
        return self.runtime(images)

    def to_predictions(self, probs: np.ndarray) -> list[Prediction]:
        negative, positive = self.class_names
        results = []
        for p in probs.tolist():
            label = positive if p >= self.metadata.threshold else negative
            results.append(Prediction(label, {negative: 1.0 - p, positive: p}))
        return results


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
                f"no valid version of model {name!r} in {store.root}", code="model_not_found"
            )
    else:
        metadata = store.check(name, version)
    return Predictor.load(store.model_dir(name) / str(metadata.version), metadata, options)
