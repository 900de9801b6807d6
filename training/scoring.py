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
from classifier.runtimes import RuntimeOptions, answers
from classifier.store import DEFAULT_MODEL, ModelStore, default_models_dir, sha256_file
from training.data import Split, held_out_dir, load_split
from training.lineage import read_manifest, refuse_trained_on
from training.options import AT_LEAST_ONE, check_fields, option, options

RUNTIME = RuntimeOptions()  # as the service runs a version by default: a GPU, else ONNX Runtime


TOP_K = (2, 3)  # top-k accuracies reported where k < the number of classes


def as_class_probabilities(outputs: np.ndarray) -> np.ndarray:
    """A model's raw outputs as class probabilities (n, C): a sigmoid's (n,) or (n, 1)
    P(second class) becomes [1 - p, p]; a softmax's (n, C) stays as it is."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 1 or outputs.shape[1] == 1:
        p = outputs.reshape(-1, 1)
        return np.concatenate([1.0 - p, p], axis=1)
    return outputs


def class_probabilities(predictor: Predictor, images: np.ndarray) -> np.ndarray:
    """The predictor's class probabilities (n, C) in class order, on its runtime."""
    return np.asarray(predictor.predict(images), dtype=np.float64)


def predicted_classes(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The answer for each row of class probabilities: two classes, the second from
    `threshold` up (as the service answers); more, the most probable."""
    return answers(probs, threshold if probs.shape[1] == 2 else None)


def score(
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: list[str] | tuple[str, ...],
    threshold: float = 0.5,
) -> dict:
    """Scores of class probabilities (n, C) against labels 0..C-1.

    Every model: accuracy, per-class precision, recall, F1 and support, their macro
    averages, the C x C confusion matrix (rows: truth, columns: answer, in class order).
    Two classes add precision, recall (of the second class) and ROC AUC as before; more add
    top-k accuracies and a macro one-vs-rest ROC AUC. A 1-D `probs` is P(second class).
    """
    probs = as_class_probabilities(probs) if probs.ndim == 1 else probs
    names = list(class_names)
    classes = list(range(len(names)))
    if probs.shape[1] != len(names):
        raise ValueError(f"{probs.shape[1]} probabilities per image for {len(names)} classes")
    truth = labels.astype(int)
    predicted = predicted_classes(probs, threshold)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        truth, predicted, labels=classes, zero_division=0
    )
    every_class = len(np.unique(truth)) == len(names)
    scores: dict = {
        "count": len(truth),
        "accuracy": float(skm.accuracy_score(truth, predicted)),
    }
    if len(names) == 2:
        scores |= {
            "precision": float(precision[1]),
            "recall": float(recall[1]),
            "roc_auc": float(skm.roc_auc_score(truth, probs[:, 1])) if every_class else None,
        }
    else:
        scores |= {
            f"top_{k}_accuracy": float(skm.top_k_accuracy_score(truth, probs, k=k, labels=classes))
            for k in TOP_K
            if k < len(names)
        }
        scores["roc_auc"] = (
            float(skm.roc_auc_score(truth, probs, multi_class="ovr", labels=classes))
            if every_class
            else None
        )
    scores["per_class"] = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }
    # Each over the classes it is measured on: a recall where the class has photos, a
    # precision where it was answered (one class's photos, all right, gave a macro recall of
    # 0.5 beside accuracy 1.0: the absent class's unmeasured recall counted as 0).
    answered = np.bincount(predicted, minlength=len(names)) > 0
    held = support > 0
    scores["macro"] = {
        "precision": _mean_over(precision, answered),
        "recall": _mean_over(recall, held),
        "f1": _mean_over(f1, held | answered),
    }
    scores["confusion_matrix"] = skm.confusion_matrix(truth, predicted, labels=classes).tolist()
    return scores


def _mean_over(values: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(values[measured])) if measured.any() else 0.0


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log P(true class): binary cross-entropy for two classes, categorical for more."""
    clipped = np.clip(probs[np.arange(len(labels)), labels.astype(int)], 1e-7, 1 - 1e-7)
    return float(-np.mean(np.log(clipped)))


def probabilities_in_batches(
    run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """Class probabilities (n, C) for every image from `run`'s outputs (a sigmoid's or a
    softmax's, see as_class_probabilities), `batch_size` at a time."""
    return np.concatenate(
        [
            as_class_probabilities(run(images[i : i + batch_size]))
            for i in range(0, len(images), batch_size)
        ]
    )


@dataclass
class Scored:
    """A model's answers on a labelled split (class probabilities (n, C)), and their scores."""

    split: Split
    probs: np.ndarray
    scores: dict


def score_on(
    predictor: Predictor,
    folder: Path,
    *,
    progress: bool = True,
    manifest: list[dict[str, str]] | None = None,
) -> Scored:
    """Score `predictor` on the class folders in `folder`, read at its own input size;
    refused when `folder` holds photos its training `manifest` lists (lineage)."""
    names = list(predictor.class_names)
    model = f"model {predictor.name} v{predictor.version}"
    split = load_split(
        folder, predictor.spec, names, progress=progress, of=model, every_class=False
    )
    refuse_trained_on(split, manifest, model)
    probs = probabilities_in_batches(
        lambda batch: class_probabilities(predictor, batch), split.images
    )
    return Scored(split, probs, score(probs, split.labels, names, predictor.metadata.threshold))


def load_version(store: ModelStore, name: str, version: int | None = None) -> Predictor:
    """A stored version (the newest valid one by default), checked and loaded for scoring."""
    return load_predictor(store, name, version, RUNTIME)


def version_manifest(store: ModelStore, predictor: Predictor) -> list[dict[str, str]] | None:
    """What a stored version was trained and validated on (None: published without it)."""
    return read_manifest(store.model_dir(predictor.name) / str(predictor.version))


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
    models_dir: Path = option(
        default_models_dir(),
        help="model store root: MODELS_DIR, else the checkout's models/, as the service's",
    )
    model_name: str = option(
        DEFAULT_MODEL, help="model name (the service's default model when not given)"
    )
    version: int | None = option(None, help="version (default: newest valid)", within=AT_LEAST_ONE)

    def __post_init__(self) -> None:
        check_fields(self)
