"""A typed facade over a loaded model version: raw uint8 images in, class probabilities out."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.errors import ModelStoreError
from classifier.metadata import MODEL_FILE, ModelMetadata
from classifier.spec import InputSpec


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]

    def to_dict(self) -> dict:
        return {"label": self.label, "probabilities": self.probabilities}


class Predictor:
    """One model version. The model's sigmoid output is P(class_names[1])."""

    def __init__(self, model, metadata: ModelMetadata) -> None:
        self._model = model
        self.metadata = metadata
        self._lock = threading.Lock()

    @classmethod
    def load(cls, folder: Path, metadata: ModelMetadata) -> Predictor:
        """Load the Keras file in safe mode (no arbitrary code) and check its input/output shape."""
        import keras

        try:
            model = keras.saving.load_model(folder / MODEL_FILE, compile=False, safe_mode=True)
        except Exception as exc:
            raise ModelStoreError(
                f"{metadata.name} v{metadata.version}: cannot load {MODEL_FILE}: {exc}",
                code="model_load_failed",
            ) from None
        expected_in = (None, *metadata.input_spec.shape)
        if tuple(model.input_shape) != expected_in or tuple(model.output_shape) != (None, 1):
            raise ModelStoreError(
                f"{metadata.name} v{metadata.version}: model takes {model.input_shape} and gives "
                f"{model.output_shape}; metadata needs {expected_in} -> (None, 1)",
                code="model_shape_mismatch",
            )
        return cls(model, metadata)

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
        """P(class_names[1]) for a batch of shape (n, height, width, 3), dtype uint8."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != self.spec.shape:
            raise ValueError(
                f"expected uint8 images of shape (n, {self.spec.shape}), "
                f"got {images.dtype} {images.shape}"
            )
        if len(images) == 0:
            return np.zeros((0,), dtype=np.float32)
        with self._lock:
            out = self._model.predict_on_batch(images)
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def to_predictions(self, probs: np.ndarray) -> list[Prediction]:
        negative, positive = self.class_names
        results = []
        for p in probs.tolist():
            label = positive if p >= self.metadata.threshold else negative
            results.append(Prediction(label, {negative: 1.0 - p, positive: p}))
        return results

    def classify(self, images: np.ndarray) -> list[Prediction]:
        return self.to_predictions(self.predict_proba(images))
