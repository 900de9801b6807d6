"""Train the CNN on DIR/train and DIR/validation, evaluate, and publish a new model version.

python -m training.train --data-dir ../shared/data/cats_vs_dogs --epochs 30
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from classifier import preprocess
from classifier.errors import ClassifierError
from classifier.metadata import MODEL_FILE, ONNX_FILE, ModelMetadata
from classifier.spec import DEFAULT_SPEC, InputSpec
from classifier.store import ModelStore
from training.data import Split, load_split, training_dataset
from training.model import (
    OPTIMIZERS,
    PRECISION_CHOICES,
    SCHEDULES,
    Augmentation,
    build_model,
    compile_model,
    learning_rate_schedule,
    resolve_precision,
    steps_per_epoch,
)
from training.plots import plot_history
from training.report import score

HISTORY_FILE = "history.json"
CURVES_FILE = "training_curves.png"


@dataclass
class TrainConfig:
    data_dir: Path
    models_dir: Path = Path("models")
    model_name: str = "cats_vs_dogs"
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "rmsprop"
    schedule: str = "constant"
    warmup_epochs: int = 0
    weight_decay: float = 0.0
    augmentation: bool = False
    rotation: float = 0.1
    zoom: float = 0.2
    translation: float = 0.1
    contrast: float = 0.0
    dropout: float = 0.0
    precision: str = "float32"
    keep_best: bool = False
    seed: int = 1337
    threshold: float = 0.5
    image_size: int = DEFAULT_SPEC.height
    command: str | None = None  # the command line that ran it, recorded in the metadata

    def spec(self) -> InputSpec:
        return InputSpec(height=self.image_size, width=self.image_size)

    def augment(self) -> Augmentation | None:
        if not self.augmentation:
            return None
        return Augmentation(self.rotation, self.zoom, self.translation, self.contrast)


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
    history: dict[str, list[float]]
    train_split: Split
    val_split: Split
    metrics: dict
    wall_seconds: float


def fit(config: TrainConfig) -> Fitted:
    """Load the data through the shared preprocessing, build, fit and evaluate on validation."""
    started = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    spec = config.spec()
    train_split = load_split(config.data_dir / "train", spec)
    val_split = load_split(config.data_dir / "validation", spec, train_split.class_names)

    config.precision = resolve_precision(config.precision)
    model = build_model(
        spec,
        augmentation=config.augment() or False,
        dropout=config.dropout,
        seed=config.seed,
        precision=config.precision,
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
    # Scored, and later published and gated, as it will be served.
    serving = serving_model(model)
    metrics = evaluate(serving, val_split, config.batch_size, config.threshold)
    metrics["train_final"] = {"accuracy": history["accuracy"][-1], "loss": history["loss"][-1]}
    metrics["best_epoch"] = keep_best.best_epoch if keep_best is not None else config.epochs
    elapsed = time.monotonic() - started
    return Fitted(serving, spec, history, train_split, val_split, metrics, elapsed)


def publish(
    config: TrainConfig,
    fitted: Fitted,
    extra: Callable[[Path], dict] | None = None,
) -> ModelMetadata:
    """Publish the fitted model as the next version; `extra(folder)` may add files and fields."""

    def write(folder: Path) -> dict:
        export_model(fitted.model, folder)
        (folder / HISTORY_FILE).write_text(json.dumps(fitted.history, indent=2) + "\n")
        plot_history(fitted.history, folder / CURVES_FILE, title=f"{config.model_name} training")
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
    serving = build_model(InputSpec(height=height, width=width, channels=channels))
    for layer in serving.layers[1:]:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    return serving


def export_model(model: keras.Model, folder: Path) -> None:
    """Write the serving model as a Keras file (no optimizer state) and as ONNX."""
    serving = serving_model(model)
    serving.save(folder / MODEL_FILE)
    serving.predict_on_batch(np.zeros((1, *serving.input_shape[1:]), dtype=np.float32))
    serving.export(str(folder / ONNX_FILE), format="onnx", verbose=False)


def predict_probs(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0)).reshape(-1)


def evaluate(model, split: Split, batch_size: int, threshold: float) -> dict:
    """Scores of `model` on the validation split, with its binary cross-entropy."""
    probs = predict_probs(model, split.images, batch_size)
    truth = split.labels
    clipped = np.clip(probs, 1e-7, 1 - 1e-7)
    loss = float(-np.mean(truth * np.log(clipped) + (1 - truth) * np.log(1 - clipped)))
    return {"validation": {**score(probs, truth, threshold), "loss": loss}}


def build_metadata(config: TrainConfig, fitted: Fitted) -> dict:
    import PIL
    import tensorflow as tf

    train_split, val_split, spec = fitted.train_split, fitted.val_split, fitted.spec
    return {
        "class_names": train_split.class_names,
        "input": spec.to_dict(),
        "threshold": config.threshold,
        "output": {"activation": "sigmoid", "positive_class": train_split.class_names[1]},
        "preprocessing": preprocess.describe(spec),
        "training": {
            "data": config.data_dir.name,
            "counts": {"train": train_split.counts(), "validation": val_split.counts()},
            "skipped": {"train": len(train_split.skipped), "validation": len(val_split.skipped)},
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "optimizer": config.optimizer,
            "learning_rate": config.learning_rate,
            "schedule": config.schedule,
            "warmup_epochs": config.warmup_epochs,
            "weight_decay": config.weight_decay,
            "loss": "binary_crossentropy",
            "augmentation": config.augmentation,
            "augmentation_ranges": asdict(augment) if (augment := config.augment()) else None,
            "dropout": config.dropout,
            "precision": config.precision,
            "keep_best": config.keep_best,
            "seed": config.seed,
            "command": config.command,
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


# Named starting points for the options; options given on the command line override them.
RECIPES: dict[str, dict] = {
    "plain": {},
    # The shipped default model (docs/model-card.md).
    "shipped": {
        "epochs": 150,
        "batch_size": 32,
        "optimizer": "adamw",
        "learning_rate": 1e-3,
        "schedule": "cosine",
        "warmup_epochs": 3,
        "weight_decay": 0.02,
        "augmentation": True,
        "rotation": 0.1,
        "zoom": 0.2,
        "translation": 0.1,
        "contrast": 0.2,
        "dropout": 0.5,
        "keep_best": True,
        "precision": "auto",
    },
}

DESCRIPTION = (
    "Train the small CNN on DIR/train and DIR/validation (one sub-folder per class, two "
    "classes) and publish it as the next version in the model store."
)


def parser(
    prog: str = "python -m training.train", description: str = DESCRIPTION
) -> argparse.ArgumentParser:
    """The training options; training.retrain adds its own to the same parser."""
    defaults = TrainConfig(data_dir=Path("."))
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data-dir", type=Path, required=True, help="folder with train/ and validation/"
    )
    p.add_argument("--models-dir", type=Path, default=defaults.models_dir, help="model store root")
    p.add_argument("--model-name", default=defaults.model_name, help="name to publish under")
    p.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="plain",
        help="start from a named set of the options below (shipped: the recipe of the shipped "
        "model, see docs/model-card.md; plain: the defaults shown); options given explicitly "
        "override it",
    )
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="training epochs")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per step")
    p.add_argument(
        "--learning-rate",
        type=float,
        default=defaults.learning_rate,
        help="learning rate (the peak rate with --schedule cosine)",
    )
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer, help="optimizer")
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=defaults.schedule,
        help="learning rate schedule: constant, or warm-up then cosine decay to zero",
    )
    p.add_argument(
        "--warmup-epochs",
        type=int,
        default=defaults.warmup_epochs,
        help="epochs of linear warm-up before the cosine decay",
    )
    p.add_argument(
        "--weight-decay",
        type=float,
        default=defaults.weight_decay,
        help="decoupled weight decay (AdamW only; biases are not decayed)",
    )
    p.add_argument(
        "--augmentation",
        action=argparse.BooleanOptionalAction,
        default=defaults.augmentation,
        help="random flip, rotation, zoom, translation (one warp per image, training only)",
    )
    p.add_argument(
        "--rotation",
        type=float,
        default=defaults.rotation,
        help="largest random rotation, as a fraction of a full turn",
    )
    p.add_argument(
        "--zoom", type=float, default=defaults.zoom, help="largest random zoom, as a fraction"
    )
    p.add_argument(
        "--translation",
        type=float,
        default=defaults.translation,
        help="largest random shift, as a fraction of the image size",
    )
    p.add_argument(
        "--contrast",
        type=float,
        default=defaults.contrast,
        help="largest random contrast change, as a fraction (0 turns it off)",
    )
    p.add_argument(
        "--dropout", type=float, default=defaults.dropout, help="dropout rate before Dense 512"
    )
    p.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default=defaults.precision,
        help="compute precision while training; auto is mixed_bfloat16 where the GPU or CPU "
        "computes bfloat16 natively, else float32 (the published model is float32 either way)",
    )
    p.add_argument(
        "--keep-best",
        action=argparse.BooleanOptionalAction,
        default=defaults.keep_best,
        help="publish the weights of the epoch with the best validation accuracy",
    )
    p.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    p.add_argument(
        "--threshold",
        type=float,
        default=defaults.threshold,
        help="decision threshold on P(second class)",
    )
    p.add_argument(
        "--image-size", type=int, default=defaults.image_size, help="square input size in pixels"
    )
    return p


def parse_args(p: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse once to find --recipe, then again with its options as the defaults."""
    first, _ = p.parse_known_args(argv)
    p.set_defaults(**RECIPES[first.recipe])
    return p.parse_args(argv)


def config_from(
    p: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str] | None = None
) -> TrainConfig:
    if args.epochs < 1 or args.batch_size < 1:
        p.error("--epochs and --batch-size must be at least 1")
    if not 0 <= args.warmup_epochs < args.epochs:
        p.error("--warmup-epochs must lie in [0, --epochs)")
    if args.weight_decay and args.optimizer != "adamw":
        p.error("--weight-decay needs --optimizer adamw")
    for name in ("rotation", "zoom", "translation", "contrast", "dropout"):
        if not 0.0 <= getattr(args, name) < 1.0:
            p.error(f"--{name} must lie in [0, 1)")
    if args.learning_rate <= 0:
        p.error("--learning-rate must be positive")
    names = TrainConfig.__dataclass_fields__
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    config.command = " ".join([p.prog, *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    return config


def main(argv: list[str] | None = None) -> int:
    p = parser()
    config = config_from(p, parse_args(p, argv), argv)

    try:
        result = train(config)
    except ClassifierError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    meta = result.metadata
    val = result.metrics["validation"]
    print(
        f"published {meta.name} v{meta.version} to {config.models_dir / meta.name / str(meta.version)}"
        f": validation accuracy {val['accuracy']:.4f}, loss {val['loss']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
