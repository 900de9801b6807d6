"""The contract shared by training and serving: input spec, preprocessing and the model store."""

from classifier.errors import ClassifierError, ImageError, ModelStoreError
from classifier.metadata import ModelMetadata
from classifier.predictor import Prediction, Predictor
from classifier.preprocess import decode_image
from classifier.spec import DEFAULT_SPEC, InputSpec
from classifier.store import ModelStore, VersionStatus

__all__ = [
    "DEFAULT_SPEC",
    "ClassifierError",
    "ImageError",
    "InputSpec",
    "ModelMetadata",
    "ModelStore",
    "ModelStoreError",
    "Prediction",
    "Predictor",
    "VersionStatus",
    "decode_image",
]
