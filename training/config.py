"""The training options, declared once: the command line, the recipes and the metadata follow."""

from __future__ import annotations

import datetime as _dt
import os
import re
import unicodedata
from dataclasses import field
from pathlib import Path

from classifier.errors import ModelStoreError
from classifier.spec import DEFAULT_SPEC, InputSpec
from classifier.store import NAME_PATTERN, default_models_dir, validate_name
from training.model import (
    OPTIMIZERS,
    PRECISION_CHOICES,
    SCHEDULES,
    SMALLEST_INPUT,
    Augmentation,
)
from training.options import (
    AT_LEAST_ONE,
    FRACTION,
    NOT_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    OptionError,
    Range,
    check_fields,
    option,
    options,
)

SEEDS = Range(0, 2**32 - 1)  # what NumPy's legacy seeding (keras.utils.set_random_seed) takes


@options
class TrainConfig:
    """How to train and where to publish; `recorded=False` options are recorded elsewhere or
    not at all (see train.build_metadata)."""

    data_dir: Path = option(help="folder with train/ and validation/", recorded=False)
    models_dir: Path = option(
        default_models_dir(),
        help="model store root: MODELS_DIR, else the checkout's models/, as the service's",
        recorded=False,
    )
    model_name: str | None = option(
        None,
        help="name to publish under; a model's classes never change, so new classes need a "
        "new name (default: the data folder's name made a valid model name, e.g. "
        ".../cat_breeds publishes cat_breeds)",
        recorded=False,
    )
    epochs: int = option(30, help="training epochs", within=AT_LEAST_ONE)
    batch_size: int = option(32, help="images per step", within=AT_LEAST_ONE)
    learning_rate: float = option(
        1e-3, help="learning rate (the peak rate with --schedule cosine)", within=POSITIVE
    )
    optimizer: str = option("rmsprop", help="optimizer", choices=OPTIMIZERS)
    schedule: str = option(
        "constant",
        help="learning rate schedule: constant, or warm-up then cosine decay to zero",
        choices=SCHEDULES,
    )
    warmup_epochs: int = option(
        0, help="epochs of linear warm-up before the cosine decay", within=NOT_NEGATIVE
    )
    weight_decay: float = option(
        0.0,
        help="decoupled weight decay (AdamW only; biases are not decayed)",
        within=NOT_NEGATIVE,
    )
    augmentation: bool = option(
        False,
        help="random flip, rotation, zoom, translation (one warp per image, training only)",
    )
    rotation: float = option(
        0.1,
        help="largest random rotation, as a fraction of a full turn",
        within=FRACTION,
        recorded=False,
    )
    zoom: float = option(
        0.2, help="largest random zoom, as a fraction", within=FRACTION, recorded=False
    )
    translation: float = option(
        0.1,
        help="largest random shift, as a fraction of the image size",
        within=FRACTION,
        recorded=False,
    )
    contrast: float = option(
        0.0,
        help="largest random contrast change, as a fraction (0 turns it off)",
        within=FRACTION,
        recorded=False,
    )
    dropout: float = option(0.0, help="dropout rate before Dense 512", within=FRACTION)
    precision: str = option(
        "float32",
        help="compute precision while training; auto is mixed_bfloat16 where the GPU or CPU "
        "computes bfloat16 natively, else float32 (the published model is float32 either way)",
        choices=PRECISION_CHOICES,
    )
    keep_best: bool = option(
        False, help="publish the weights of the epoch with the best validation accuracy"
    )
    seed: int = option(1337, help="random seed", within=SEEDS)
    threshold: float = option(
        0.5,
        help="decision threshold on P(second class), two classes only (more: the most "
        "probable class)",
        within=PROBABILITY,
        recorded=False,
    )
    image_size: int = option(
        DEFAULT_SPEC.height,
        help="square input size in pixels",
        within=Range(SMALLEST_INPUT),
        recorded=False,
    )
    extra_data: tuple[Path, ...] = option(
        (),
        help="a folder of class folders (some of the model's classes, e.g. labelled feedback "
        "FEEDBACK_DIR/<model>) whose photos are added to the training photos, never to "
        "validation; may be given several times",
        recorded=False,
    )
    calibrate: bool = option(
        True,
        help="fit temperature scaling on the validation photos after training and fold it "
        "into the output layer, so every runtime returns calibrated probabilities",
    )
    run_dir: Path | None = option(
        None,
        help="folder for the checkpoint written after every epoch, kept after the run "
        "(default: MODELS_DIR/.runs/<name>-<time>, removed once the run has finished)",
        recorded=False,
    )
    resume: Path | None = option(
        None,
        help="continue the interrupted run in this folder (printed when it started), with "
        "the options it was started with",
        recorded=False,
    )
    command: str | None = field(default=None, compare=False)  # not an option: what ran it
    started: str = field(  # not an option: names the default run folder
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
        compare=False,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        # Frozen: the one value filled in after the fact, before anyone reads it.
        object.__setattr__(self, "model_name", checked_model_name(self.model_name, self.data_dir))
        if self.warmup_epochs >= self.epochs:
            raise OptionError("warmup_epochs", f"must be less than --epochs ({self.epochs})")
        if self.weight_decay and self.optimizer != "adamw":
            raise OptionError("weight_decay", "needs --optimizer adamw")
        if self.resume is not None and self.run_dir not in (None, self.resume):
            raise OptionError("run_dir", "is --resume's folder when resuming; give one of them")

    def checkpoint_dir(self) -> Path:
        """Where this run's checkpoints go (see --run-dir and --resume)."""
        return (
            self.resume
            or self.run_dir
            or self.models_dir / ".runs" / f"{self.model_name}-{self.started}"
        )

    def spec(self) -> InputSpec:
        return InputSpec(height=self.image_size, width=self.image_size)

    def augment(self) -> Augmentation | None:
        if not self.augmentation:
            return None
        return Augmentation(self.rotation, self.zoom, self.translation, self.contrast)


@options
class GateOptions:
    """When retrain publishes a challenger (see retrain.decide)."""

    tolerance: float = option(
        0.01,
        help="how far below the champion's held-out accuracy the challenger may be",
        within=PROBABILITY,
    )
    force: bool = option(False, help="publish the challenger even if it is worse")
    class_recall_tolerance: float = option(
        0.05,
        help="how far below the champion's held-out recall on any one class the "
        "challenger's may be",
        within=PROBABILITY,
    )

    def __post_init__(self) -> None:
        check_fields(self)


NAME_RULE = "letters, digits, '_', '.', '-', at most 64, starting with a letter or digit"


def derived_model_name(data_dir: Path) -> str | None:
    """The data folder's name as a model name: accents dropped, other characters outside the
    store's rule made '_'; None when nothing valid is left (a name in another script)."""
    folder = Path(os.path.abspath(data_dir)).name
    plain = unicodedata.normalize("NFKD", folder).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", plain)
    name = re.sub(r"^[^A-Za-z0-9]+", "", name)[:64].rstrip("_-")
    return name if re.match(NAME_PATTERN, name) else None


def checked_model_name(given: str | None, data_dir: Path) -> str:
    """`given` if the store takes it, else the name derived from `data_dir`; never a default
    of its own (a model's classes come from its data)."""
    if given is not None:
        try:
            return validate_name(given)
        except ModelStoreError:
            raise OptionError("model_name", f"{given!r} is not a model name: {NAME_RULE}") from None
    derived = derived_model_name(data_dir)
    if derived is None:
        raise OptionError(
            "model_name",
            f"is needed: the data folder's name {Path(os.path.abspath(data_dir)).name!r} "
            f"gives no model name ({NAME_RULE})",
        )
    return derived


# Named starting points: field values over the defaults; options given explicitly override them.
RECIPES: dict[str, dict] = {
    "plain": {},
    # The shipped default model, v4 (docs/model-card.md): the full training set, 23,000 photos.
    "shipped": {
        "epochs": 40,
        "batch_size": 32,
        "optimizer": "adamw",
        "learning_rate": 1e-3,
        "schedule": "cosine",
        "warmup_epochs": 2,
        "weight_decay": 0.02,
        "augmentation": True,
        "rotation": 0.1,
        "zoom": 0.2,
        "translation": 0.1,
        "contrast": 0.2,
        "dropout": 0.5,
        "keep_best": False,
        "precision": "auto",
    },
}
# v3's recipe, for a few thousand photos: the same with many more epochs, the best one kept.
RECIPES["small-data"] = {**RECIPES["shipped"], "epochs": 150, "warmup_epochs": 3, "keep_best": True}
