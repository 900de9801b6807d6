import numpy as np
import pytest

from classifier.spec import DEFAULT_SPEC, InputSpec
from training.model import (
    SMALLEST_INPUT,
    Augmentation,
    Head,
    build_model,
    compile_model,
    learning_rate_schedule,
)

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


def test_three_classes_or_more_change_only_the_head_to_softmax():
    """The one documented change: Dense C softmax instead of Dense 1 sigmoid."""
    binary, five = build_model(DEFAULT_SPEC), build_model(DEFAULT_SPEC, classes=5)
    assert [layer.name for layer in five.layers] == [layer.name for layer in binary.layers]
    for layer in binary.layers[1:-1]:
        assert layer.get_config() | {"name": ""} == five.get_layer(layer.name).get_config() | {
            "name": ""
        }
    assert five.output_shape == (None, 5)
    assert five.get_layer("output").get_config()["activation"] == "softmax"
    assert binary.get_layer("output").get_config()["activation"] == "sigmoid"
    assert five.count_params() == 3_453_121 - 513 + 5 * 513
    assert (Head.of(binary), Head.of(five)) == (Head(2), Head(5))
    assert (Head(2).loss, Head(3).loss) == (
        "binary_crossentropy",
        "sparse_categorical_crossentropy",
    )
    with pytest.raises(ValueError, match="at least two classes"):
        build_model(DEFAULT_SPEC, classes=1)


def test_the_loss_and_accuracy_follow_the_head():
    three = compile_model(build_model(InputSpec(64, 64), classes=3))
    assert three.loss == "sparse_categorical_crossentropy"
    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3)).astype("uint8")
    probs = np.asarray(three.predict(images, verbose=0))
    assert probs.shape == (4, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    logs = three.evaluate(images, np.array([0.0, 1.0, 2.0, 1.0]), verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    assert compile_model(build_model(InputSpec(64, 64))).loss == "binary_crossentropy"


def test_augmentation_and_dropout_add_no_parameters():
    model = build_model(DEFAULT_SPEC, augmentation=Augmentation(), dropout=0.5, seed=1)
    assert model.count_params() == 3_453_121
    names = [layer.name for layer in model.layers]
    assert "dropout" in names and "aug_affine" in names


def test_model_takes_raw_pixels_and_is_deterministic_at_inference():
    model = build_model(InputSpec(64, 64), augmentation=Augmentation(), dropout=0.5, seed=1)
    model = compile_model(model)
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


def test_the_smallest_input_is_what_the_blocks_take():
    assert build_model(InputSpec(SMALLEST_INPUT, SMALLEST_INPUT)).output_shape == (None, 1)
    with pytest.raises(ValueError):
        build_model(InputSpec(SMALLEST_INPUT - 1, SMALLEST_INPUT - 1))


def test_no_augmentation_layer_when_it_would_do_nothing():
    idle = Augmentation(rotation=0, zoom=0, translation=0, contrast=0, flip=False)
    names = [layer.name for layer in build_model(InputSpec(64, 64), augmentation=idle).layers]
    assert "aug_affine" not in names


def test_mixed_bfloat16_computes_in_bfloat16_with_a_float32_output():
    model = build_model(InputSpec(64, 64), augmentation=Augmentation(), precision="mixed_bfloat16")
    assert model.get_layer("conv1").compute_dtype == "bfloat16"
    assert model.get_layer("conv1").variable_dtype == "float32"
    assert model.get_layer("aug_affine").compute_dtype == "float32"
    assert model.get_layer("output").compute_dtype == "float32"


def test_serving_model_is_float32_without_training_layers_and_same_weights():
    from training.train import serving_model

    trained = build_model(
        InputSpec(64, 64),
        augmentation=Augmentation(),
        dropout=0.5,
        seed=2,
        precision="mixed_bfloat16",
    )
    serving = serving_model(trained)
    assert [layer.name for layer in serving.layers] == [
        layer.name for layer in build_model(InputSpec(64, 64)).layers
    ]
    assert {layer.compute_dtype for layer in serving.layers[1:]} == {"float32"}
    for a, b in zip(
        serving.get_layer("dense").get_weights(), trained.get_layer("dense").get_weights()
    ):
        assert np.array_equal(a, b)
    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3)).astype("uint8")
    full = np.asarray(serving(images.astype("float32"))).reshape(-1)
    half = np.asarray(trained(images, training=False), dtype="float32").reshape(-1)
    np.testing.assert_allclose(full, half, atol=0.02)  # bfloat16 has ~3 significant digits


def test_serving_model_keeps_a_softmax_head():
    from training.train import serving_model

    trained = build_model(InputSpec(64, 64), classes=4, dropout=0.5, precision="mixed_bfloat16")
    serving = serving_model(trained)
    assert serving.output_shape == (None, 4)
    for a, b in zip(
        serving.get_layer("output").get_weights(), trained.get_layer("output").get_weights()
    ):
        assert np.array_equal(a, b)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    rate = learning_rate_schedule(1e-3, "cosine", total_steps=100, warmup_steps=10)
    assert float(rate(0)) == pytest.approx(0.0)
    assert float(rate(5)) == pytest.approx(5e-4)
    assert float(rate(10)) == pytest.approx(1e-3)
    assert float(rate(55)) == pytest.approx(5e-4, rel=1e-3)
    assert float(rate(100)) == pytest.approx(0.0, abs=1e-9)
    assert learning_rate_schedule(1e-3) == 1e-3
    with pytest.raises(ValueError):
        learning_rate_schedule(1e-3, "step", 10)


def test_adamw_does_not_decay_biases():
    model = compile_model(build_model(InputSpec(64, 64)), 1e-3, "adamw", 0.1)
    assert model.optimizer.weight_decay == pytest.approx(0.1)
    bias = model.get_layer("dense").bias
    kernel = model.get_layer("dense").kernel
    assert not model.optimizer._use_weight_decay(bias)
    assert model.optimizer._use_weight_decay(kernel)
    with pytest.raises(ValueError):
        compile_model(build_model(InputSpec(64, 64)), 1e-3, "sgd")


def test_auto_precision_uses_bfloat16_only_where_the_hardware_has_it():
    from training.model import resolve_precision

    assert resolve_precision("float32") == "float32"
    assert resolve_precision("auto", cpu_flags={"avx2", "amx_bf16"}, gpus=[]) == "mixed_bfloat16"
    assert resolve_precision("auto", cpu_flags={"avx512_bf16"}, gpus=[]) == "mixed_bfloat16"
    assert resolve_precision("auto", cpu_flags={"avx2", "fma"}, gpus=[]) == "float32"
    ampere, volta = {"compute_capability": (8, 0)}, {"compute_capability": (7, 0)}
    assert resolve_precision("auto", cpu_flags=set(), gpus=[ampere]) == "mixed_bfloat16"
    assert resolve_precision("auto", cpu_flags={"amx_bf16"}, gpus=[volta]) == "float32"
    assert resolve_precision("auto") in ("float32", "mixed_bfloat16")  # this machine
