"""The data plane on a real model: the one path every protocol takes to it."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.batching import DeadlineExceeded, QueueFull
from classifier.errors import ImageError
from classifier.preprocess import decode_image
from service import calls
from service.dataplane import DataPlane, Upload
from service.errors import RequestError
from service.http.app import create_app
from service.registry import ModelNotFound, VersionNotFound
from tests.helpers import app_config, jpeg_bytes


@pytest.fixture(scope="module")
def plane(models_template) -> DataPlane:
    return create_app(app_config(models_template, VERSION_LABELS="stable=1")).extensions[
        "dataplane"
    ]


def test_files_and_their_pixels_give_the_same_probabilities(plane):
    model = plane.model("pets")
    files = [Upload(jpeg_bytes(seed=1)), Upload(jpeg_bytes(seed=2), "b.jpg")]
    from_files = plane.predict(model, files)
    pixels = np.stack([decode_image(f.data, model.spec) for f in files])
    assert from_files.shape == (2, 2) and np.allclose(from_files.sum(axis=1), 1)
    assert np.allclose(plane.predict(model, pixels), from_files, atol=1e-6)
    probabilities, labels = plane.classify(model, pixels)
    assert probabilities.dtype == np.float32 and labels == model.predictor.labels(from_files)


def test_the_call_is_told_the_model_and_the_images(plane):
    call = calls.begin("dataplane-test")
    try:
        plane.predict(plane.model("pets"), [Upload(jpeg_bytes())])
    finally:
        calls.end()
    assert (call.model, call.version, call.images) == ("pets", 1, 1)


def test_lookups_refuse_what_is_not_served(plane):
    with pytest.raises(ModelNotFound):
        plane.model("nope")
    with pytest.raises(VersionNotFound):
        plane.model("pets", 7)
    assert plane.labelled("pets", "stable") == 1
    with pytest.raises(VersionNotFound, match="no version labelled 'canary'"):
        plane.labelled("pets", "canary")


def test_the_count_is_checked_before_the_queue_and_the_queue_before_decoding(plane):
    model = plane.model("pets")
    with pytest.raises(RequestError, match="65 images in one request; the limit is 64"):
        plane.predict(model, [Upload(b"not an image")] * 65)
    capacity = model.batcher.capacity
    model.batcher.capacity = 0  # as if full
    try:
        with pytest.raises(QueueFull):
            plane.predict(model, [Upload(b"not an image")])  # refused before decoding
    finally:
        model.batcher.capacity = capacity
    with pytest.raises(ImageError) as bad:
        plane.predict(model, [Upload(jpeg_bytes()), Upload(b"junk", "a.png")])
    assert bad.value.message.startswith("a.png: the data is not a recognised image")
    assert bad.value.details == {"index": 1, "filename": "a.png"}


def test_a_call_deadline_shortens_the_request_deadline(plane):
    with pytest.raises(DeadlineExceeded, match="deadline of 0 ms"):
        plane.predict(plane.model("pets"), [Upload(jpeg_bytes())], timeout_s=0.0)
