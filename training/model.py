"""The classic small-data CNN (Deep Learning with Python, chapter 8), taking raw 0-255 pixels."""

from __future__ import annotations

import keras
from keras import layers

from classifier.spec import InputSpec


def build_model(
    spec: InputSpec,
    *,
    augmentation: bool = False,
    dropout: float = 0.0,
    seed: int | None = None,
) -> keras.Model:
    """Conv2D 32-64-128-128 (3x3, relu) each with MaxPooling 2x2, Flatten, Dense 512, Dense 1.

    Rescaling to [0, 1] is the first layer, so callers feed raw uint8 pixels. Augmentation
    layers and dropout only act during training; at inference they pass inputs through.
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    stack: list[layers.Layer] = [layers.Rescaling(1.0 / 255, name="rescale")]
    if augmentation:
        stack += [
            layers.RandomFlip("horizontal", seed=seed, name="aug_flip"),
            layers.RandomRotation(0.1, seed=seed, name="aug_rotate"),
            layers.RandomZoom(0.2, seed=seed, name="aug_zoom"),
        ]
    for i, filters in enumerate((32, 64, 128, 128), start=1):
        stack += [
            layers.Conv2D(filters, 3, activation="relu", name=f"conv{i}"),
            layers.MaxPooling2D(2, name=f"pool{i}"),
        ]
    stack.append(layers.Flatten(name="flatten"))
    if dropout > 0:
        stack.append(layers.Dropout(dropout, seed=seed, name="dropout"))
    stack += [
        layers.Dense(512, activation="relu", name="dense"),
        layers.Dense(1, activation="sigmoid", name="output"),
    ]
    inputs = keras.Input(shape=spec.shape, name="image")
    x = inputs
    for layer in stack:
        x = layer(x)
    return keras.Model(inputs, x, name="small_cnn")


def compile_model(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model
