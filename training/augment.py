"""Model-side augmentation: one random affine warp per image instead of one warp per layer.

Keras's RandomFlip, RandomRotation, RandomZoom and RandomTranslation each resample the whole
batch; composing them into one matrix resamples once, which costs a fraction of the time on
a CPU and blurs the image once instead of three times. It runs in float32 whatever the
model's precision policy (the resampling kernel is slow in bfloat16) and only in training.
"""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="training")
class RandomAffine(keras.layers.Layer):
    """Random horizontal flip, rotation, zoom and translation, plus optional contrast jitter.

    `rotation` is a fraction of a full turn (as in RandomRotation), `zoom` and `translation`
    fractions of the image size, `contrast` the largest relative change around each image's
    mean, each in [0, 1) (checked with the other options, config.TrainConfig). Pixels from
    outside the image are filled by reflection.
    """

    def __init__(
        self,
        rotation: float = 0.1,
        zoom: float = 0.2,
        translation: float = 0.1,
        flip: bool = True,
        contrast: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.rotation, self.zoom, self.translation = rotation, zoom, translation
        self.flip, self.contrast, self.seed = flip, contrast, seed
        self.generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, images, training=None):
        images = ops.cast(images, self.compute_dtype)
        if not training:
            return images
        return self._augment(images)

    def _augment(self, images):
        shape = ops.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        h, w = ops.cast(height, "float32"), ops.cast(width, "float32")

        def uniform(low: float, high: float):
            return keras.random.uniform((batch,), low, high, seed=self.generator)

        angle = uniform(-self.rotation, self.rotation) * (2 * math.pi)
        scale = uniform(1.0 - self.zoom, 1.0 + self.zoom)  # > 1 shows more of the scene
        coin = uniform(0.0, 1.0)
        mirror = ops.where(coin < 0.5, -1.0, 1.0) if self.flip else ops.ones_like(coin)
        dx = uniform(-self.translation, self.translation) * w
        dy = uniform(-self.translation, self.translation) * h
        cos, sin = ops.cos(angle) * scale, ops.sin(angle) * scale
        # Maps each output pixel to the input pixel it samples: input = M (out - c) + c + d.
        cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
        a0, a1 = cos * mirror, -sin
        b0, b1 = sin * mirror, cos
        a2 = cx + dx - a0 * cx - a1 * cy
        b2 = cy + dy - b0 * cx - b1 * cy
        zeros = ops.zeros_like(a0)
        transform = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        out = ops.image.affine_transform(
            images, transform, interpolation="bilinear", fill_mode="reflect"
        )
        if self.contrast > 0:
            factor = ops.reshape(uniform(1.0 - self.contrast, 1.0 + self.contrast), (-1, 1, 1, 1))
            mean = ops.mean(out, axis=(1, 2, 3), keepdims=True)
            out = ops.clip((out - mean) * factor + mean, 0.0, 255.0)
        return out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "rotation": self.rotation,
            "zoom": self.zoom,
            "translation": self.translation,
            "flip": self.flip,
            "contrast": self.contrast,
            "seed": self.seed,
        }
