"""The classic small-data CNN (Deep Learning with Python, chapter 8), taking raw 0-255 pixels.

Two classes keep the book's head, one sigmoid unit (P(second class)) trained with binary
cross-entropy; three or more get one softmax unit per class and sparse categorical
cross-entropy. The convolutional base is the same either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import layers

from classifier.hardware import native_bf16
from classifier.spec import InputSpec
from training.augment import RandomAffine

PRECISIONS = ("float32", "mixed_bfloat16")
PRECISION_CHOICES = ("auto", *PRECISIONS)
OPTIMIZERS = ("rmsprop", "adamw")
SCHEDULES = ("constant", "cosine")
# The smallest input the four blocks of a 3x3 convolution and a 2x2 pooling can take.
SMALLEST_INPUT = 46
BINARY = 2  # classes a single sigmoid unit answers for


@dataclass(frozen=True)
class Head:
    """The output layer for a number of classes, and the loss it is trained with."""

    classes: int

    def __post_init__(self) -> None:
        if self.classes < BINARY:
            raise ValueError(f"a classifier needs at least two classes, got {self.classes}")

    @property
    def binary(self) -> bool:
        return self.classes == BINARY

    @property
    def units(self) -> int:
        return 1 if self.binary else self.classes

    @property
    def activation(self) -> str:
        return "sigmoid" if self.binary else "softmax"

    @property
    def loss(self) -> str:
        return "binary_crossentropy" if self.binary else "sparse_categorical_crossentropy"

    @classmethod
    def of(cls, model: keras.Model) -> Head:
        """The head of a model `build_model` made: one unit is two classes."""
        units = model.output_shape[-1]
        return cls(BINARY if units == 1 else units)


@dataclass(frozen=True)
class Augmentation:
    """Random warp ranges (see RandomAffine); no flip and all ranges zero means no layer."""

    rotation: float = 0.1
    zoom: float = 0.2
    translation: float = 0.1
    contrast: float = 0.0
    flip: bool = True

    @property
    def active(self) -> bool:
        return self.flip or any((self.rotation, self.zoom, self.translation, self.contrast))


def build_model(
    spec: InputSpec,
    *,
    classes: int = BINARY,
    augmentation: Augmentation | None = None,
    dropout: float = 0.0,
    seed: int | None = None,
    precision: str = "float32",
) -> keras.Model:
    """Conv2D 32-64-128-128 (3x3, relu) each with MaxPooling 2x2, Flatten, Dense 512, then
    Dense 1 sigmoid for two classes or Dense `classes` softmax for more (see Head).

    Rescaling to [0, 1] is the first layer of the served model, so callers feed raw uint8
    pixels. The augmentation layer (before it, on raw pixels) and dropout only act while
    training; `train.serving_model` drops them. With `precision="mixed_bfloat16"` the layers
    compute in bfloat16 (fast on CPUs with AMX and on GPUs) and keep float32 weights; the
    output layer stays float32. The options are checked where they are declared
    (config.TrainConfig).
    """
    head = Head(classes)
    stack: list[layers.Layer] = []
    if augmentation is not None and augmentation.active:
        stack.append(
            RandomAffine(
                rotation=augmentation.rotation,
                zoom=augmentation.zoom,
                translation=augmentation.translation,
                flip=augmentation.flip,
                contrast=augmentation.contrast,
                seed=seed,
                name="aug_affine",
            )
        )
    stack.append(layers.Rescaling(1.0 / 255, name="rescale", dtype=precision))
    for i, filters in enumerate((32, 64, 128, 128), start=1):
        stack += [
            layers.Conv2D(filters, 3, activation="relu", name=f"conv{i}", dtype=precision),
            layers.MaxPooling2D(2, name=f"pool{i}", dtype=precision),
        ]
    stack.append(layers.Flatten(name="flatten", dtype=precision))
    if dropout > 0:
        stack.append(layers.Dropout(dropout, seed=seed, name="dropout", dtype=precision))
    stack += [
        layers.Dense(512, activation="relu", name="dense", dtype=precision),
        layers.Dense(head.units, activation=head.activation, name="output", dtype="float32"),
    ]
    inputs = keras.Input(shape=spec.shape, name="image")
    x = inputs
    for layer in stack:
        x = layer(x)
    return keras.Model(inputs, x, name="small_cnn")


def resolve_precision(precision: str, cpu_flags: set[str] | None = None, gpus=None) -> str:
    """`auto` is bfloat16 where the hardware computes it natively, else float32.

    Natively means a GPU of compute capability 8.0 or newer (every GPU TensorFlow sees), or,
    with no GPU, a CPU with AMX or AVX-512 bfloat16 instructions; elsewhere bfloat16 is
    emulated and slower than float32.
    """
    if precision != "auto":
        return precision
    if gpus is None:
        import tensorflow as tf

        gpus = [
            tf.config.experimental.get_device_details(gpu)
            for gpu in tf.config.list_physical_devices("GPU")
        ]
    if gpus:
        native = all(tuple(g.get("compute_capability") or (0, 0)) >= (8, 0) for g in gpus)
        return "mixed_bfloat16" if native else "float32"
    return "mixed_bfloat16" if native_bf16(cpu_flags) else "float32"


def learning_rate_schedule(
    learning_rate: float,
    schedule: str = "constant",
    total_steps: int = 0,
    warmup_steps: int = 0,
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """A constant rate, or linear warm-up then cosine decay to zero over `total_steps`."""
    if schedule == "constant":
        return learning_rate
    if schedule != "cosine":
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if total_steps < 1:
        raise ValueError("a cosine schedule needs total_steps >= 1")
    warmup_steps = min(max(warmup_steps, 0), total_steps - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
        alpha=0.0,
    )


def compile_model(
    model: keras.Model,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
    optimizer: str = "rmsprop",
    weight_decay: float = 0.0,
) -> keras.Model:
    """RMSprop (the book's choice) or AdamW with decoupled weight decay; the loss and the
    accuracy metric follow the model's head."""
    if optimizer == "rmsprop":
        opt = keras.optimizers.RMSprop(learning_rate=learning_rate)
    elif optimizer == "adamw":
        opt = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
        # Biases are not decayed (the usual practice; decaying them only adds noise).
        opt.exclude_from_weight_decay(var_names=["bias"])
    else:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    head = Head.of(model)
    accuracy = (
        "accuracy" if head.binary else keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    )
    model.compile(optimizer=opt, loss=head.loss, metrics=[accuracy])
    return model


def steps_per_epoch(count: int, batch_size: int) -> int:
    return math.ceil(count / batch_size)
