"""Train the CNN on DIR/train and DIR/validation, evaluate, and publish a new model version.

python -m training.train --data-dir ../shared/data/cats_vs_dogs --epochs 30

The classes are DIR/train's sub-folders (two or more); the model is published under
--model-name, by default the data folder's name. A model's classes never change: data whose
classes differ from the newest version's of that name is refused before training starts.
"""

from __future__ import annotations

import argparse
import contextlib
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

from classifier import drift, preprocess
from classifier.errors import ClassifierError
from classifier.metadata import MODEL_FILE, ONNX_FILE, ModelMetadata
from classifier.spec import InputSpec
from classifier.store import ModelStore
from training import lineage
from training.calibration import (
    Reliability,
    fit_temperature,
    negative_log_likelihood,
    plot_reliability,
    probabilities,
    reliability,
    separated,
)
from training.checkpoint import RunDir, RunState, mark_published, prune_runs, refuse_published
from training.cli import EPILOG, reports_errors
from training.config import RECIPES, TrainConfig
from training.data import (
    DatasetError,
    EpochBatches,
    Split,
    check_extra,
    check_split,
    file_hashes,
    load_extra,
    load_split,
)
from training.model import (
    Head,
    build_model,
    compile_model,
    learning_rate_schedule,
    resolve_precision,
    steps_per_epoch,
)
from training.options import add_options, build, option_fields, recorded_options
from training.plots import plot_confusion, plot_history
from training.report import markdown_tables
from training.scoring import cross_entropy, probabilities_in_batches, score

HISTORY_FILE = "history.json"
CURVES_FILE = "training_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
CALIBRATION_FILE = "calibration.png"
EXPORT_FILES = (MODEL_FILE, ONNX_FILE)  # what export_model writes


@dataclass
class TrainResult:
    metadata: ModelMetadata
    history: dict[str, list[float]]
    metrics: dict


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
    calibration: Calibrated | None = None
    drift_reference: dict | None = None  # its answers on validation (classifier/drift.py)
    run_id: str | None = None  # its run folder's (training/checkpoint.py)


def check_data(config: TrainConfig) -> list[str]:
    """The class names of DIR/train, once the data and the store are known to fit: refused
    before anything is decoded or trained are a missing split, fewer than two classes, an
    empty class folder, validation classes other than train's, --threshold with more than two
    classes, classes other than those of the newest version of --model-name, and extra
    folders with other classes or no photo."""
    names = check_split(config.data_dir / "train")
    check_split(config.data_dir / "validation", names, of="train")
    for folder in config.extra_data:
        check_extra(folder, names)
    if len(names) > 2 and config.threshold != TrainConfig.threshold:
        raise DatasetError(
            f"--threshold is for two classes; {config.data_dir / 'train'} has {len(names)} "
            "(the answer is the most probable class)"
        )
    store = ModelStore(config.models_dir)
    store.refuse_other_classes(
        config.model_name,
        names,
        what="this data",
        advice="a model's classes never change, choose a new --model-name for these classes",
    )
    store.check_publishable(config.model_name)
    refuse_published(config.resume, store=store, name=config.model_name)
    return names


def fit(config: TrainConfig) -> Fitted:
    """Check the data, load it through the shared preprocessing, build, fit (checkpointing
    every epoch into the run folder, or resuming from it), calibrate and evaluate on
    validation."""
    started = time.monotonic()
    class_names = check_data(config)
    keras.utils.set_random_seed(config.seed)
    spec = config.spec()
    val_split = load_split(config.data_dir / "validation", spec, class_names)
    held_out = {f.sha256 for f in val_split.files} | file_hashes(config.data_dir / "test")
    train_split = Split.concat(
        [
            not_held_out(
                load_split(config.data_dir / "train", spec, class_names),
                held_out,
                config.data_dir / "train",
                config.data_dir.name,
            ),
            *extra_photos(config, spec, class_names, held_out),
        ]
    )
    if empty := [name for name, count in train_split.counts().items() if not count]:
        raise DatasetError(
            f"no photo of {empty} is left to train on: each is also a held-out photo "
            f"(validation or test) of {config.data_dir.name}"
        )
    run = open_run(config, lineage.data_hash(train_split, val_split))

    precision = run.precision(resolve_precision(config.precision))
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
    state = run_epochs(config, model, run, train_split, val_split)
    if state.best_weights is not None:
        model.set_weights(state.best_weights)
    # Scored, published and gated as it will be served; the only place the graph is built.
    serving = serving_model(model)
    calibration = calibrate(serving, val_split, config.batch_size) if config.calibrate else None
    probs = probabilities_in_batches(serving.predict_on_batch, val_split.images, config.batch_size)
    metrics = validation_scores(serving, val_split, config.batch_size, config.threshold, probs)
    reference = {
        **drift.reference(probs, class_names, config.threshold),
        "recorded_by": "training",
    }
    history = state.history
    metrics["train_final"] = {"accuracy": history["accuracy"][-1], "loss": history["loss"][-1]}
    metrics["best_epoch"] = state.best_epoch if config.keep_best else config.epochs
    elapsed = time.monotonic() - started
    return Fitted(
        serving,
        spec,
        precision,
        history,
        train_split,
        val_split,
        metrics,
        elapsed,
        calibration,
        reference,
        run.run_id,
    )


def not_held_out(split: Split, held_out: set[str], folder: Path, data: str) -> Split:
    """`split` less its held-out photos (the same bytes as a validation photo, or one of
    DIR/test where retrain judges): a model trained on them would be calibrated, kept-best
    and gated on photos it has seen."""
    split, left_out = split.without(held_out)
    if left_out:
        print(
            f"{folder}: {left_out} photos left out, they are held-out photos of {data} "
            "(validation or test)",
            file=sys.stderr,
        )
    return split


def extra_photos(
    config: TrainConfig, spec: InputSpec, class_names: list[str], held_out: set[str]
) -> list[Split]:
    """The photos of the --extra-data folders, less any that are held-out photos: feedback on
    a validation photo must not be trained on either."""
    extras = []
    for folder in config.extra_data:
        split = load_extra(folder, spec, class_names)
        if split is None:
            continue
        split = not_held_out(split, held_out, folder, config.data_dir.name)
        if split.files:
            extras.append(split)
    return extras


def open_run(config: TrainConfig, data_sha256: str) -> RunDir:
    """The run folder to checkpoint into: a new one, or --resume's after checking that it
    trains the same thing."""
    identity = {**run_identity(config), "data_sha256": data_sha256}
    if config.resume is not None:
        run = RunDir.resume(config.resume, identity)
        print(f"resuming the run in {run.path}", file=sys.stderr)
    else:
        if config.run_dir is None:
            for stale in prune_runs(config.checkpoint_dir()):
                print(f"removed an interrupted run's checkpoints: {stale}", file=sys.stderr)
        run = RunDir.start(config.checkpoint_dir(), identity)
        print(
            f"checkpoints in {run.path} (continue an interrupted run with --resume {run.path})",
            file=sys.stderr,
        )
    return run


def run_identity(config: TrainConfig) -> dict:
    """What a resumed run must share with the run it continues: every option that changes
    the numbers (not where data, models and checkpoints live)."""
    where = {"data_dir", "extra_data", "models_dir", "run_dir", "resume"}  # data: its hash
    return {f.name: getattr(config, f.name) for f in option_fields(config) if f.name not in where}


def run_epochs(
    config: TrainConfig, model: keras.Model, run: RunDir, train_split: Split, val_split: Split
) -> RunState:
    """Train from where the run stands to the last epoch, saving the whole state after each."""
    state = run.restore(model)
    batches = EpochBatches(train_split, config.batch_size, config.seed)
    verbose = 1 if sys.stdout.isatty() else 0
    for epoch in range(state.epoch, config.epochs):
        began = time.monotonic()
        logs = model.fit(
            batches(epoch),
            initial_epoch=epoch,
            epochs=epoch + 1,
            validation_data=(val_split.images, val_split.labels),
            validation_batch_size=64,
            shuffle=False,  # the order is the epoch's (data.epoch_order)
            verbose=verbose,
        ).history
        refuse_diverged(config, epoch + 1, logs)
        state.seconds += time.monotonic() - began
        state.record(epoch + 1, {k: v[-1] for k, v in logs.items()}, model, config.keep_best)
        run.save(model, state)
        print(
            progress_line(state, config.epochs, len(train_split.labels), time.monotonic() - began)
        )
    return state


class TrainingError(ClassifierError):
    code = "training_diverged"


def refuse_diverged(config: TrainConfig, epoch: int, logs: dict[str, list[float]]) -> None:
    """Stop at the first epoch whose loss is not finite: its weights are NaN from then on, so
    every later epoch is lost time and the model would answer NaN (it ended in a traceback)."""
    bad = {k: v[-1] for k, v in logs.items() if k.endswith("loss") and not np.isfinite(v[-1])}
    if bad:
        found = ", ".join(f"{k} {v}" for k, v in bad.items())
        raise TrainingError(
            f"training diverged at epoch {epoch} ({found}); nothing was published: train "
            f"again with a lower --learning-rate (this run's: {config.learning_rate:g})"
        )


def progress_line(state: RunState, epochs: int, images: int, seconds: float) -> str:
    """`epoch 3/40 ... 195 images/s, 1:14:02 left`, from the run's mean epoch time so far."""
    done = state.epoch
    per_epoch = state.seconds / max(done, 1)
    left = round(per_epoch * (epochs - done))
    scores = "  ".join(f"{k} {v[-1]:.4f}" for k, v in state.history.items())
    return (
        f"epoch {done}/{epochs}  {scores}  {images / seconds:.0f} images/s, "
        f"{left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d} left"
    )


def output_logits(serving: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The output layer's logits in float64: (n,) for a sigmoid, (n, C) for a softmax."""
    features = keras.Model(serving.inputs, serving.get_layer("dense").output)
    kernel, bias = serving.get_layer("output").get_weights()
    rows = [
        features.predict_on_batch(images[i : i + batch_size])
        for i in range(0, len(images), batch_size)
    ]
    logits = np.concatenate(rows).astype(np.float64) @ kernel.astype(np.float64) + bias
    return logits[:, 0] if logits.shape[1] == 1 else logits


@dataclass
class Calibrated:
    """The temperature folded into a model, and its calibration on validation before and
    after."""

    temperature: float
    before: Reliability
    after: Reliability
    loss_before: float
    loss_after: float

    def to_dict(self) -> dict:
        return {
            "method": "temperature scaling",
            "temperature": self.temperature,
            "fitted_on": "validation",
            "applied": "folded into the output layer (weights and bias divided by it)",
            "expected_calibration_error": {"before": self.before.ece, "after": self.after.ece},
            "loss": {"before": self.loss_before, "after": self.loss_after},
            "of": self.after.of,
            "bins": {
                "before": self.before.to_dict()["bins"],
                "after": self.after.to_dict()["bins"],
            },
        }


def calibrate(serving: keras.Model, split: Split, batch_size: int) -> Calibrated:
    """Fit a temperature on `split` and fold it into `serving`'s output layer."""
    logits = output_logits(serving, split.images, batch_size)
    temperature = fit_temperature(logits, split.labels)
    if separated(logits, split.labels):
        print(
            f"calibration: every one of the {len(split.labels)} validation photos is answered "
            "right, so no temperature can be fitted on them: T stays 1 (more validation "
            "photos, with some mistakes among them, would fit one)",
            file=sys.stderr,
        )
    names = split.class_names
    calibrated = Calibrated(
        temperature,
        reliability(probabilities(logits), split.labels, names),
        reliability(probabilities(logits, temperature), split.labels, names),
        negative_log_likelihood(logits, split.labels, 1.0),
        negative_log_likelihood(logits, split.labels, temperature),
    )
    output = serving.get_layer("output")
    kernel, bias = output.get_weights()
    output.set_weights([kernel / temperature, bias / temperature])
    return calibrated


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
        if fitted.calibration is not None:
            plot_reliability(
                {"before": fitted.calibration.before, "after": fitted.calibration.after},
                folder / CALIBRATION_FILE,
                f"{config.model_name}: temperature {fitted.calibration.temperature:.3f} "
                "on validation",
            )
        fields = build_metadata(config, fitted)
        fields["training"]["data_manifest"] = lineage.write_manifest(
            folder, fitted.train_split, fitted.val_split
        )
        if extra is not None:
            fields.update(extra(folder))
        return fields

    metadata = ModelStore(config.models_dir).publish(config.model_name, write)
    finish_run(config, metadata)
    return metadata


def finish_run(config: TrainConfig, published: ModelMetadata | None = None) -> None:
    """A finished run's checkpoints go, unless --run-dir or --resume named their folder:
    that one then records what it published, so that it is not resumed to publish again."""
    if config.run_dir is not None or config.resume is not None:
        if published is not None:
            try:
                mark_published(config.checkpoint_dir(), published.name, published.version)
            except OSError as exc:  # published all the same: say so, do not fail the command
                print(
                    f"warning: could not record in {config.checkpoint_dir()} that it published "
                    f"v{published.version} ({exc.strerror or exc}); do not --resume it",
                    file=sys.stderr,
                )
    else:
        shutil.rmtree(config.checkpoint_dir(), ignore_errors=True)
        with contextlib.suppress(OSError):
            config.checkpoint_dir().parent.rmdir()  # .runs, when no other run is there


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


def validation_scores(
    model: keras.Model,
    split: Split,
    batch_size: int,
    threshold: float,
    probs: np.ndarray | None = None,
) -> dict:
    """Scores of an in-memory `model` on the validation split, with its cross-entropy
    (`probs`: its class probabilities there, when already computed)."""
    if probs is None:
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
            **({"run_id": fitted.run_id} if fitted.run_id else {}),
        },
        "metrics": fitted.metrics,
        "calibration": fitted.calibration.to_dict() if fitted.calibration else None,
        "drift_reference": fitted.drift_reference,
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
    prog: str = "python -m training.train", description: str = DESCRIPTION, epilog: str = EPILOG
) -> argparse.ArgumentParser:
    """--recipe and the options of TrainConfig; training.retrain adds its own to the same parser."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
