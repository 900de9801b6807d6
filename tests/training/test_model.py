import numpy as np
import pytest

from classifier.spec import DEFAULT_SPEC, InputSpec
from training.model import build_model, compile_model

EXPECTED_SHAPES = [
    ("rescale", (None, 150, 150, 3)),
    ("conv1", (None, 148, 148, 32)),
    ("pool1", (None, 74, 74, 32)),
    ("conv2", (None, 72, 72, 64)),
    ("pool2", (None, 36, 36, 64)),
    ("conv3", (None, 34, 34, 128)),
    ("pool3", (None, 17, 17, 128)),
    ("conv4", (None, 15, 15, 128)),
    ("pool4", (None, 7, 7, 128)),
    ("flatten", (None, 6272)),
    ("dense", (None, 512)),
    ("output", (None, 1)),
]


def test_layers_and_output_shapes():
    model = build_model(DEFAULT_SPEC)
    shapes = [(layer.name, tuple(layer.output.shape)) for layer in model.layers[1:]]
    assert shapes == EXPECTED_SHAPES
    assert model.layers[1].name == "rescale"  # rescaling is the first layer after the input


def test_parameter_count_matches_the_book():
    assert build_model(DEFAULT_SPEC).count_params() == 3_453_121


def test_augmentation_and_dropout_add_no_parameters():
    model = build_model(DEFAULT_SPEC, augmentation=True, dropout=0.5, seed=1)
    assert model.count_params() == 3_453_121
    names = [layer.name for layer in model.layers]
    assert "dropout" in names and "aug_flip" in names


def test_model_takes_raw_pixels_and_is_deterministic_at_inference():
    model = compile_model(build_model(InputSpec(64, 64), augmentation=True, dropout=0.5, seed=1))
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype("uint8")
    first = np.asarray(model.predict(images, verbose=0))
    second = np.asarray(model.predict(images, verbose=0))
    assert first.shape == (2, 1)
    assert np.array_equal(first, second)
    assert ((first > 0) & (first < 1)).all()


def test_rescaling_maps_255_to_one():
    model = build_model(InputSpec(64, 64))
    out = model.get_layer("rescale")(np.full((1, 64, 64, 3), 255, dtype="float32"))
    assert float(np.max(out)) == pytest.approx(1.0)


def test_bad_dropout_is_refused():
    with pytest.raises(ValueError):
        build_model(DEFAULT_SPEC, dropout=1.0)
