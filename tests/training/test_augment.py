import keras
import numpy as np
import pytest

from training.augment import RandomAffine


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (6, 40, 30, 3)).astype("uint8")


def test_inference_passes_images_through(images):
    out = np.asarray(RandomAffine(contrast=0.3, seed=1)(images, training=False))
    assert out.dtype == np.float32
    assert np.array_equal(out, images.astype("float32"))


def test_training_warps_each_image_differently_within_the_pixel_range(images):
    out = np.asarray(RandomAffine(contrast=0.3, seed=1)(images, training=True))
    assert out.shape == images.shape
    assert out.min() >= 0.0 and out.max() <= 255.0
    changed = [not np.allclose(o, i) for o, i in zip(out, images.astype("float32"))]
    assert all(changed)
    assert not np.allclose(out[0], out[1])


def test_with_no_ranges_it_is_the_identity(images):
    layer = RandomAffine(rotation=0, zoom=0, translation=0, flip=False, seed=1)
    out = np.asarray(layer(images, training=True))
    np.testing.assert_allclose(out, images.astype("float32"), atol=1e-3)


def test_flip_alone_mirrors_about_the_centre_column(images):
    """The affine matrix's centre term: a flip must map column x to W-1-x exactly."""
    layer = RandomAffine(rotation=0, zoom=0, translation=0, flip=True, seed=3)
    seen = set()
    for _ in range(4):
        out = np.asarray(layer(images, training=True))
        for o, i in zip(out, images.astype("float32")):
            mirrored = np.allclose(o, i[:, ::-1], atol=1e-3)
            assert mirrored or np.allclose(o, i, atol=1e-3)
            seen.add(mirrored)
    assert seen == {True, False}


def test_same_seed_same_warps(images):
    a = np.asarray(RandomAffine(seed=7)(images, training=True))
    b = np.asarray(RandomAffine(seed=7)(images, training=True))
    assert np.array_equal(a, b)


def test_config_round_trips():
    layer = RandomAffine(rotation=0.05, zoom=0.1, translation=0.2, flip=False, contrast=0.1)
    clone = RandomAffine.from_config(layer.get_config())
    assert (clone.rotation, clone.zoom, clone.translation, clone.flip, clone.contrast) == (
        0.05, 0.1, 0.2, False, 0.1
    )  # fmt: skip


def test_runs_in_float32_under_a_bfloat16_model():
    layer = RandomAffine(seed=1)
    assert layer.compute_dtype == "float32"
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        assert RandomAffine(seed=1).compute_dtype == "float32"
    finally:
        keras.config.set_dtype_policy("float32")
