"""Scoring a model on labelled photos: answers in batches, their scores, the models to score.

A stored version and retrain's challenger (its files as `export_model` wrote them) are both
loaded through classifier.predictor with the same RuntimeOptions, so a gate compares two
models on one runtime, the one the service picks by default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from classifier.metadata import ModelMetadata
from classifier.predictor import Predictor, load_predictor
from classifier.runtimes import RuntimeOptions
from classifier.store import ModelStore, sha256_file
from training.data import Split, held_out_dir, load_split
from training.options import AT_LEAST_ONE, check_fields, option, options

RUNTIME = RuntimeOptions()  # as the service runs a version by default: a GPU, else ONNX Runtime


def score(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Accuracy, precision, recall, ROC AUC and the confusion matrix (rows: truth)."""
    truth = labels.astype(int)
    predicted = (probs >= threshold).astype(int)
    both_classes = len(np.unique(truth)) == 2
    return {
        "count": len(truth),
        "accuracy": float(skm.accuracy_score(truth, predicted)),
        "precision": float(skm.precision_score(truth, predicted, zero_division=0)),
        "recall": float(skm.recall_score(truth, predicted, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(truth, probs)) if both_classes else None,
        "confusion_matrix": skm.confusion_matrix(truth, predicted, labels=[0, 1]).tolist(),
    }


def predict_in_batches(
    run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """P(positive class) for every image, `batch_size` at a time: memory stays bounded."""
    return np.concatenate(
        [
            np.asarray(run(images[i : i + batch_size])).reshape(-1)
            for i in range(0, len(images), batch_size)
        ]
    )


@dataclass
class Scored:
    """A model's answers on a labelled split, and their scores."""

    split: Split
    probs: np.ndarray
    scores: dict


def score_on(predictor: Predictor, folder: Path, *, progress: bool = True) -> Scored:
    """Score `predictor` on the class folders in `folder`, read at its own input size."""
    split = load_split(folder, predictor.spec, list(predictor.class_names), progress=progress)
    probs = predict_in_batches(predictor.predict_proba, split.images)
    return Scored(split, probs, score(probs, split.labels, predictor.metadata.threshold))


def load_version(store: ModelStore, name: str, version: int | None = None) -> Predictor:
    """A stored version (the newest valid one by default), checked and loaded for scoring."""
    return load_predictor(store, name, version, RUNTIME)


def load_export(folder: Path, name: str, version: int, fields: dict) -> Predictor:
    """The files `export_model` wrote into `folder`, loaded as a stored version is: as
    `name` v`version` with the metadata `fields` it would be published with."""
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}
    metadata = ModelMetadata.from_dict({**fields, "name": name, "version": version, "files": files})
    return Predictor.load(folder, metadata, RUNTIME)


def split_folder(data_dir: Path) -> Path:
    """`data_dir` itself when it is a split of class folders, else its held-out split."""
    if (data_dir / "test").is_dir() or (data_dir / "validation").is_dir():
        return held_out_dir(data_dir)
    return data_dir


@options
class VersionOptions:
    """Which stored version to score, and on which photos (evaluate and model_card)."""

    data_dir: Path = option(
        help="labelled photos: a split of class folders, or a folder with test/ or "
        "validation/ (test/ when both)"
    )
    models_dir: Path = option(Path("models"), help="model store root")
    model_name: str = option("cats_vs_dogs", help="model name")
    version: int | None = option(None, help="version (default: newest valid)", within=AT_LEAST_ONE)

    def __post_init__(self) -> None:
        check_fields(self)
