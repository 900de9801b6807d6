"""Train the CNN on DIR/train and DIR/validation, evaluate, and publish a new model version.

python -m training.train --data-dir ../shared/data/cats_vs_dogs --epochs 30

The classes are DIR/train's sub-folders (two or more); the model is published under
--model-name, by default the data folder's name. A model's classes never change: data whose
classes differ from the newest version's of that name is refused before training starts.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from classifier import preprocess
from classifier.metadata import MODEL_FILE, ONNX_FILE, ModelMetadata
from classifier.spec import InputSpec
from classifier.store import ModelStore
from training.cli import reports_errors
from training.config import RECIPES, TrainConfig
from training.data import DatasetError, Split, check_split, load_split, training_dataset
from training.model import (
    Head,
    build_model,
    compile_model,
    learning_rate_schedule,
    resolve_precision,
    steps_per_epoch,
)
from training.options import add_options, build, recorded_options
from training.plots import plot_confusion, plot_history
from training.report import markdown_tables
from training.scoring import cross_entropy, probabilities_in_batches, score

HISTORY_FILE = "history.json"
CURVES_FILE = "training_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
EXPORT_FILES = (MODEL_FILE, ONNX_FILE)  # what export_model writes


@dataclass
class TrainResult:
    metadata: ModelMetadata
    history: dict[str, list[float]]
    metrics: dict


class KeepBest(keras.callbacks.Callback):
    """Remember the weights of the epoch with the best validation accuracy; restore them at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.best = -1.0
        self.best_epoch = 0
        self.weights: list | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        acc = float((logs or {}).get("val_accuracy", -1.0))
        if acc > self.best:
            self.best, self.best_epoch = acc, epoch + 1
            self.weights = self.model.get_weights()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.weights is not None:
            self.model.set_weights(self.weights)


@dataclass
class Fitted:
    """A trained model with what it was trained and validated on."""

    model: keras.Model  # as it will be served: float32, without the training-only layers
    spec: InputSpec
    precision: str  # what it computed in while training (`auto` resolved)
    history: dict[str, list[float]]
    train_split: Split
    val_split: Split
    metrics: dict
    wall_seconds: float


def check_data(config: TrainConfig) -> list[str]:
    """The class names of DIR/train, once the data and the store are known to fit: refused
    before anything is decoded or trained are a missing split, fewer than two classes, an
    empty class folder, validation classes other than train's, --threshold with more than two
    classes, and classes other than those of the newest version of --model-name."""
    names = check_split(config.data_dir / "train")
    check_split(config.data_dir / "validation", names, of="train")
    if len(names) > 2 and config.threshold != TrainConfig.threshold:
        raise DatasetError(
            f"--threshold is for two classes; {config.data_dir / 'train'} has {len(names)} "
            "(the answer is the most probable class)"
        )
    ModelStore(config.models_dir).refuse_other_classes(
        config.model_name,
        names,
        what="this data",
        advice="a model's classes never change, choose a new --model-name for these classes",
    )
    return names


def fit(config: TrainConfig) -> Fitted:
    """Check the data, load it through the shared preprocessing, build, fit and evaluate on
    validation."""
    started = time.monotonic()
    class_names = check_data(config)
    keras.utils.set_random_seed(config.seed)
    spec = config.spec()
    train_split = load_split(config.data_dir / "train", spec, class_names)
    val_split = load_split(config.data_dir / "validation", spec, class_names)

    precision = resolve_precision(config.precision)
    model = build_model(
        spec,
        classes=len(class_names),
        augmentation=config.augment(),
        dropout=config.dropout,
        seed=config.seed,
        precision=precision,
    )
    steps = steps_per_epoch(len(train_split.labels), config.batch_size)
    rate = learning_rate_schedule(
        config.learning_rate, config.schedule, steps * config.epochs, steps * config.warmup_epochs
    )
    compile_model(model, rate, config.optimizer, config.weight_decay)
    keep_best = KeepBest() if config.keep_best else None
    history = model.fit(
        training_dataset(train_split, config.batch_size, config.seed),
        shuffle=False,  # the dataset reshuffles itself every epoch
        epochs=config.epochs,
        validation_data=(val_split.images, val_split.labels),
        validation_batch_size=64,
        callbacks=[keep_best] if keep_best is not None else [],
        verbose=1 if sys.stdout.isatty() else 2,
    ).history
    history = {k: [float(v) for v in vals] for k, vals in history.items()}
    # Scored, published and gated as it will be served; the only place the graph is built.
    serving = serving_model(model)
    metrics = validation_scores(serving, val_split, config.batch_size, config.threshold)
    metrics["train_final"] = {"accuracy": history["accuracy"][-1], "loss": history["loss"][-1]}
    metrics["best_epoch"] = keep_best.best_epoch if keep_best is not None else config.epochs
    elapsed = time.monotonic() - started
    return Fitted(serving, spec, precision, history, train_split, val_split, metrics, elapsed)


def publish(
    config: TrainConfig,
    fitted: Fitted,
    extra: Callable[[Path], dict] | None = None,
    exported: Path | None = None,
) -> ModelMetadata:
    """Publish the fitted model as the next version; `extra(folder)` may add files and fields.

    `exported` is a folder `export_model` already wrote the model into (retrain scored those
    files): they are published as they are instead of being exported again.
    """

    def write(folder: Path) -> dict:
        if exported is None:
            export_model(fitted.model, folder)
        else:
            for name in EXPORT_FILES:
                shutil.copyfile(exported / name, folder / name)
        (folder / HISTORY_FILE).write_text(json.dumps(fitted.history, indent=2) + "\n")
        plot_history(fitted.history, folder / CURVES_FILE, title=f"{config.model_name} training")
        validation = fitted.metrics["validation"]
        plot_confusion(
            validation["confusion_matrix"],
            fitted.train_split.class_names,
            folder / CONFUSION_FILE,
            title=f"{config.model_name} on validation: accuracy {validation['accuracy']:.3f}",
        )
        fields = build_metadata(config, fitted)
        if extra is not None:
            fields.update(extra(folder))
        return fields

    return ModelStore(config.models_dir).publish(config.model_name, write)


def train(config: TrainConfig) -> TrainResult:
    """Fit, evaluate on validation, publish. Returns the published metadata."""
    fitted = fit(config)
    metadata = publish(config, fitted)
    return TrainResult(metadata=metadata, history=fitted.history, metrics=fitted.metrics)


def serving_model(model: keras.Model) -> keras.Model:
    """The same weights in float32, without the training-only layers (augmentation, dropout).

    Both pass inputs through at inference, but their random ops would still be traced into
    an export, and ONNX has no kernels for them. A model trained in mixed precision is
    served in float32, so every runtime computes the same numbers.
    """
    height, width, channels = model.input_shape[1:]
    spec = InputSpec(height=height, width=width, channels=channels)
    serving = build_model(spec, classes=Head.of(model).classes)
    for layer in serving.layers[1:]:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    return serving


def export_model(serving: keras.Model, folder: Path) -> None:
    """Write a serving graph as a Keras file (no optimizer state) and as ONNX.

    `serving` is what `serving_model` (and so `fit`) returns, or any `build_model(spec)`
    without augmentation, dropout or mixed precision: it is written as it is.
    """
    serving.save(folder / MODEL_FILE)
    serving.predict_on_batch(np.zeros((1, *serving.input_shape[1:]), dtype=np.float32))
    serving.export(str(folder / ONNX_FILE), format="onnx", verbose=False)


def validation_scores(model: keras.Model, split: Split, batch_size: int, threshold: float) -> dict:
    """Scores of an in-memory `model` on the validation split, with its cross-entropy."""
    probs = probabilities_in_batches(model.predict_on_batch, split.images, batch_size)
    scores = score(probs, split.labels, split.class_names, threshold)
    return {"validation": {**scores, "loss": cross_entropy(probs, split.labels)}}


def build_metadata(config: TrainConfig, fitted: Fitted) -> dict:
    """The metadata fields training knows; its options are recorded from the config itself."""
    import PIL
    import tensorflow as tf

    train_split, val_split, spec = fitted.train_split, fitted.val_split, fitted.spec
    names = train_split.class_names
    head = Head(len(names))
    output = {"activation": head.activation, "classes": head.classes}
    if head.binary:
        output["positive_class"] = names[1]
    augment = config.augment()
    return {
        "class_names": names,
        "input": spec.to_dict(),
        "threshold": config.threshold,  # 0.5 with more classes, where it is not used
        "output": output,
        "preprocessing": preprocess.describe(spec),
        "training": {
            **recorded_options(config),
            "precision": fitted.precision,
            "augmentation_ranges": asdict(augment) if augment else None,
            "command": config.command,
            "data": config.data_dir.name,
            "counts": {"train": train_split.counts(), "validation": val_split.counts()},
            "skipped": {"train": len(train_split.skipped), "validation": len(val_split.skipped)},
            "loss": head.loss,
            "wall_seconds": round(fitted.wall_seconds, 1),
        },
        "metrics": fitted.metrics,
        "libraries": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "pillow": PIL.__version__,
        },
    }


DESCRIPTION = (
    "Train the small CNN on DIR/train and DIR/validation (one sub-folder per class, two or "
    "more classes) and publish it as the next version in the model store."
)


def parser(
    prog: str = "python -m training.train", description: str = DESCRIPTION
) -> argparse.ArgumentParser:
    """--recipe and the options of TrainConfig; training.retrain adds its own to the same parser."""
    p = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="plain",
        help="start from a named set of the options below (shipped: the recipe of the shipped "
        "model, see docs/model-card.md; plain: the defaults shown); options given explicitly "
        "override it",
    )
    add_options(p, TrainConfig)
    return p


def parse_args(p: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """--recipe, and the options given explicitly: the others are left out."""
    return p.parse_args(argv)


def config_from(
    p: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str] | None = None
) -> TrainConfig:
    """The recipe's values over the defaults, the explicit options over both; checked."""
    command = " ".join([p.prog, *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    return build(p, TrainConfig, {**RECIPES[args.recipe], **vars(args), "command": command})


@reports_errors
def main(argv: list[str] | None = None) -> int:
    p = parser()
    config = config_from(p, parse_args(p, argv), argv)
    result = train(config)
    meta = result.metadata
    val = result.metrics["validation"]
    print(
        f"published {meta.name} v{meta.version} to {config.models_dir / meta.name / str(meta.version)}"
        f": validation accuracy {val['accuracy']:.4f}, loss {val['loss']:.4f}"
    )
    print(markdown_tables(val, list(meta.class_names)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
