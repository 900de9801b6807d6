"""One request's images through a served model: limits, queue room, decode, batcher.

Every protocol's predict view ends here, so they share limits, metrics and answers.
"""

from __future__ import annotations

import numpy as np

from service.current import settings
from service.errors import RequestError
from service.inputs import Upload, decode_uploads
from service.observability import note_images
from service.registry import ServedModel


def probabilities(model: ServedModel, images: list[Upload] | np.ndarray) -> np.ndarray:
    """Class probabilities (n, C) for encoded files (decoded here, after the queue has room)
    or pixels [N, H, W, 3]."""
    note_images(len(images))
    limit = settings().max_images_per_request
    if len(images) > limit:
        raise RequestError(
            f"{len(images)} images in one request; the limit is {limit}", code="too_many_images"
        )
    model.batcher.check_room(len(images))  # overload costs no decoding
    if isinstance(images, list):
        images = decode_uploads(images, model.spec, settings().max_image_pixels)
    return model.predict(images, settings().request_deadline_ms / 1000)


def tensors(model: ServedModel, images: list[Upload] | np.ndarray) -> tuple[np.ndarray, list[str]]:
    """For the protocols' tensors: float32 probabilities [N, C] in class order, and labels."""
    probs = probabilities(model, images)
    return probs.astype(np.float32), model.predictor.labels(probs)
