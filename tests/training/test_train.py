import dataclasses
import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from classifier.predictor import load_predictor
from classifier.runtimes import RuntimeOptions
from classifier.spec import InputSpec
from classifier.store import ModelStore
from tests.helpers import SHIPPED_MODELS, make_dataset
from training import retrain
from training import train as train_module
from training.config import RECIPES, TrainConfig
from training.data import DatasetError, Split, find_classes, load_split
from training.options import option_fields


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    config = TrainConfig(
        data_dir=dataset,
        models_dir=models,
        model_name="toy",
        epochs=4,
        batch_size=8,
        image_size=64,
        keep_best=False,
    )
    return config, train_module.train(config)


def test_loss_falls(trained):
    _, result = trained
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_version_is_published_with_right_metadata(trained):
    config, result = trained
    meta = result.metadata
    assert (meta.name, meta.version) == ("toy", 1)
    assert meta.class_names == ("cats", "dogs")
    assert meta.input_spec == InputSpec(height=64, width=64)
    raw = meta.raw
    assert raw["training"]["counts"] == {
        "train": {"cats": 24, "dogs": 24},
        "validation": {"cats": 8, "dogs": 8},
    }
    assert raw["training"]["epochs"] == 4
    assert raw["preprocessing"]["resample"] == "bilinear"
    assert raw["metrics"]["validation"]["count"] == 16
    assert sum(map(sum, raw["metrics"]["validation"]["confusion_matrix"])) == 16
    assert set(raw["libraries"]) >= {"tensorflow", "keras", "pillow", "numpy", "python"}
    assert {"model.keras", "history.json", "training_curves.png"} <= set(meta.files)
    folder = config.models_dir / "toy" / "1"
    history = json.loads((folder / "history.json").read_text())
    assert len(history["val_accuracy"]) == 4
    assert (folder / "training_curves.png").read_bytes().startswith(b"\x89PNG")


def test_published_model_agrees_with_recorded_accuracy(trained, dataset):
    config, result = trained
    predictor = load_predictor(ModelStore(config.models_dir), "toy")
    split = load_split(dataset / "validation", predictor.spec, progress=False)
    predicted = predictor.predict_proba(split.images) >= 0.5
    accuracy = float((predicted == split.labels.astype(bool)).mean())
    assert accuracy == pytest.approx(result.metrics["validation"]["accuracy"])
    assert accuracy >= 0.9  # the classes differ by colour: the model must have learned it


def test_unreadable_files_are_listed_and_skipped(tmp_path, capsys):
    root = make_dataset(tmp_path, per_class=3, val_per_class=1)
    (root / "train" / "cats" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "train" / "dogs" / "empty.png").write_bytes(b"")
    split = load_split(root / "train", InputSpec(64, 64), progress=False)
    assert split.counts() == {"cats": 3, "dogs": 3}
    assert sorted(path for path, _ in split.skipped) == ["cats/broken.jpg", "dogs/empty.png"]
    assert "skipped train/cats/broken.jpg: not_an_image" in capsys.readouterr().err


def test_two_classes_or_more_are_required(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(DatasetError, match=r"at least two class folders .*found 1: \['a'\]"):
        find_classes(tmp_path)
    for name in ("b", "c"):
        (tmp_path / name).mkdir()
    assert find_classes(tmp_path) == ["a", "b", "c"]


def test_cli_reports_a_bad_data_folder(tmp_path, capsys):
    (tmp_path / "train" / "only").mkdir(parents=True)
    code = train_module.main(["--data-dir", str(tmp_path), "--models-dir", str(tmp_path / "m")])
    assert code == 2
    assert "at least two class folders (one per class); found 1: ['only']" in (
        capsys.readouterr().err
    )


def test_cli_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        train_module.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for action in train_module.parser()._actions:
        assert action.help, action.dest
        for flag in action.option_strings:
            assert flag in text


def test_cli_trains_and_publishes(dataset, tmp_path, capsys):
    code = train_module.main(
        [
            "--data-dir", str(dataset),
            "--models-dir", str(tmp_path),
            "--model-name", "cli",
            "--image-size", "64",
            "--augmentation",
            "--contrast", "0.1",
            "--dropout", "0.5",
            "--optimizer", "adamw",
            "--weight-decay", "0.01",
            "--schedule", "cosine",
            "--epochs", "2",
            "--warmup-epochs", "1",
            "--precision", "mixed_bfloat16",
        ]
    )  # fmt: skip
    assert code == 0
    assert "published cli v1" in capsys.readouterr().out
    meta = ModelStore(tmp_path).check("cli", 1)
    recorded = meta.raw["training"]
    assert recorded["augmentation"] is True and recorded["dropout"] == 0.5
    assert recorded["augmentation_ranges"]["contrast"] == 0.1
    assert (recorded["optimizer"], recorded["schedule"], recorded["precision"]) == (
        "adamw", "cosine", "mixed_bfloat16"
    )  # fmt: skip
    assert recorded["command"].startswith("python -m training.train --data-dir ")
    assert "--precision mixed_bfloat16" in recorded["command"]
    served = load_predictor(ModelStore(tmp_path), "cli", options=RuntimeOptions(runtime="keras"))
    assert {layer.compute_dtype for layer in served.runtime.model.layers[1:]} == {"float32"}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["--weight-decay", "0.1"], "--weight-decay: needs --optimizer adamw"),  # RMSprop has none
        (["--epochs", "3", "--warmup-epochs", "3"], "--warmup-epochs: must be less than --epochs"),
        (["--zoom", "1.5"], "--zoom: must lie in [0, 1), got 1.5"),
        (["--dropout", "1"], "--dropout: must lie in [0, 1), got 1.0"),
        (["--learning-rate", "0"], "--learning-rate: must be greater than 0"),
        (["--epochs", "0"], "--epochs: must be at least 1"),
        (["--batch-size", "eight"], "--batch-size: invalid int value: 'eight'"),
        (["--threshold", "1.5"], "--threshold: must lie in [0, 1]"),
        (["--image-size", "32"], "--image-size: must be at least 46"),
        (["--precision", "float16"], "--precision: invalid choice: 'float16'"),
        (["--recipe", "shipped", "--optimizer", "rmsprop"], "--weight-decay: needs --optimizer"),
    ],
)
def test_cli_refuses_inconsistent_options(bad, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        train_module.main(["--data-dir", str(tmp_path), *bad])
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("python -m training.train: error: argument ")
    assert message in last


def test_a_diverged_training_stops_at_that_epoch_in_one_line_and_publishes_nothing(
    tmp_path, capsys
):
    """A rate far too high makes the weights NaN in the first epoch; it ran every epoch,
    then ended in a scikit-learn traceback (`Input contains NaN`)."""
    data = make_dataset(tmp_path / "tiny", per_class=4, val_per_class=2)
    argv = ["--data-dir", str(data), "--models-dir", str(tmp_path / "m"), "--image-size", "64"]
    code = train_module.main([*argv, "--epochs", "3", "--learning-rate", "1e30"])
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: training diverged at epoch 1 (")
    assert "--learning-rate (this run's: 1e+30)" in last
    assert ModelStore(tmp_path / "m").versions("tiny") == []


def test_metadata_records_the_options_as_the_shipped_model_does(tmp_path):
    """The recorded options are derived from the config's fields: the shipped model's command
    line, parsed again, must give back its "training" section key for key (but the data
    manifest, which publishing adds)."""
    newest = max(int(p.name) for p in (SHIPPED_MODELS / "cats_vs_dogs").iterdir())
    shipped = json.loads((SHIPPED_MODELS / f"cats_vs_dogs/{newest}/metadata.json").read_text())
    recorded = dict(shipped["training"])
    recorded.pop("data_manifest")
    _, _, module, *argv = shlex.split(recorded["command"])
    tool = {"training.train": train_module, "training.retrain": retrain}[module]
    p = tool.parser()
    config = train_module.config_from(p, train_module.parse_args(p, argv), argv)

    def split(counts: dict[str, int]) -> Split:
        labels = np.repeat([0.0, 1.0], list(counts.values()))
        return Split(np.empty((len(labels), 0)), labels, list(counts))

    fitted = train_module.Fitted(
        model=None,
        spec=config.spec(),
        precision="mixed_bfloat16",
        history={},
        train_split=split(recorded["counts"]["train"]),
        val_split=split(recorded["counts"]["validation"]),
        metrics={},
        wall_seconds=recorded["wall_seconds"],
    )
    metadata = train_module.build_metadata(config, fitted)
    assert metadata["training"] == recorded
    for key in ("class_names", "input", "threshold", "preprocessing"):
        assert metadata[key] == shipped[key], key
    # The head now says how many classes it answers for; the rest is the shipped model's.
    assert metadata["output"] == {**shipped["output"], "classes": 2}


def test_augmented_model_exports_without_training_only_layers(dataset, tmp_path):
    config = TrainConfig(
        data_dir=dataset,
        models_dir=tmp_path,
        model_name="aug",
        epochs=1,
        batch_size=8,
        image_size=64,
        augmentation=True,
        dropout=0.5,
    )
    result = train_module.train(config)
    store = ModelStore(tmp_path)
    keras_predictor = load_predictor(store, "aug", options=RuntimeOptions(runtime="keras"))
    onnx_predictor = load_predictor(store, "aug", options=RuntimeOptions(runtime="onnx"))
    names = [layer.name for layer in keras_predictor.runtime.model.layers]
    assert not any(n.startswith("aug_") or n == "dropout" for n in names)
    split = load_split(dataset / "validation", keras_predictor.spec, progress=False)
    expected = keras_predictor.predict_proba(split.images)
    assert np.abs(onnx_predictor.predict_proba(split.images) - expected).max() <= 1e-5
    recorded = result.metrics["validation"]["accuracy"]
    assert float(((expected >= 0.5) == split.labels.astype(bool)).mean()) == pytest.approx(recorded)


def parse(argv: list[str]) -> TrainConfig:
    p = train_module.parser()
    return train_module.config_from(p, train_module.parse_args(p, argv), argv)


def test_a_recipe_sets_the_defaults_and_explicit_options_override_it(tmp_path):
    argv = ["--data-dir", str(tmp_path), "--recipe", "shipped", "--epochs", "5", "--no-keep-best"]
    config = parse(argv)
    shipped = RECIPES["shipped"]
    assert config.epochs == 5 and config.keep_best is False
    assert (config.optimizer, config.schedule, config.dropout) == (
        shipped["optimizer"], shipped["schedule"], shipped["dropout"]
    )  # fmt: skip
    assert config.augmentation is True
    assert config.command.endswith("--recipe shipped --epochs 5 --no-keep-best")
    plain = parse(["--data-dir", str(tmp_path)])
    assert plain == TrainConfig(data_dir=tmp_path)
    assert (plain.epochs, plain.optimizer, plain.augmentation) == (30, "rmsprop", False)


def test_every_recipe_names_real_options():
    names = {f.name for f in option_fields(TrainConfig)}
    for recipe in RECIPES.values():
        assert set(recipe) <= names
        TrainConfig(data_dir=Path("data"), **recipe)  # and passes the checks


def test_fit_hands_on_the_served_graph_for_publishing_and_gating(dataset, tmp_path):
    """Retrain scores `fitted.model` against the champion: it must be the float32 graph
    without training-only layers, the same the metadata's metrics were computed on."""
    config = TrainConfig(
        data_dir=dataset, models_dir=tmp_path, epochs=1, batch_size=8, image_size=64,
        augmentation=True, dropout=0.5, precision="mixed_bfloat16",
    )  # fmt: skip
    fitted = train_module.fit(config)
    names = [layer.name for layer in fitted.model.layers]
    assert not any(n.startswith("aug_") or n == "dropout" for n in names)
    assert {layer.compute_dtype for layer in fitted.model.layers[1:]} == {"float32"}
    scores = train_module.validation_scores(fitted.model, fitted.val_split, 8, config.threshold)
    assert scores == {"validation": {**fitted.metrics["validation"]}}


def test_calibration_folds_the_temperature_into_the_output_layer(dataset, tmp_path):
    """After `calibrate`, the model itself answers softmax/sigmoid(logits / T): every runtime
    reading its files returns the calibrated probabilities; the answers do not change."""
    from training.calibration import probabilities
    from training.scoring import as_class_probabilities

    config = TrainConfig(
        data_dir=dataset, models_dir=tmp_path, epochs=2, batch_size=8, image_size=64,
        calibrate=False,
    )  # fmt: skip
    fitted = train_module.fit(config)
    images = fitted.val_split.images
    logits = train_module.output_logits(fitted.model, images, 8)
    before = probabilities(logits)
    # one label turned, so that the model is not right on every photo (a temperature is
    # then fitted; on a toy set it gets all right, T stays 1: test_calibration.py)
    labels = fitted.val_split.labels.copy()
    labels[0] = 1 - labels[0]
    split = dataclasses.replace(fitted.val_split, labels=labels)
    calibrated = train_module.calibrate(fitted.model, split, 8)
    t = calibrated.temperature
    assert t != pytest.approx(1.0)
    served = as_class_probabilities(fitted.model.predict_on_batch(images))
    assert served == pytest.approx(probabilities(logits, t), abs=1e-5)
    assert (served.argmax(1) == before.argmax(1)).all()
    assert calibrated.loss_after <= calibrated.loss_before


def test_a_published_version_records_its_calibration_and_every_runtime_serves_it(trained):
    config, result = trained
    calibration = result.metadata.raw["calibration"]
    assert calibration["method"] == "temperature scaling" and calibration["temperature"] > 0
    assert calibration["loss"]["after"] <= calibration["loss"]["before"]
    assert set(calibration["expected_calibration_error"]) == {"before", "after"}
    assert result.metadata.calibration.temperature == calibration["temperature"]
    folder = config.models_dir / "toy" / "1"
    assert (folder / "calibration.png").read_bytes().startswith(b"\x89PNG")
    store = ModelStore(config.models_dir)
    images = load_split(config.data_dir / "validation", InputSpec(64, 64), progress=False).images
    answers = {
        runtime: load_predictor(
            store, "toy", 1, RuntimeOptions(runtime=runtime, precision="fp32")
        ).predict(images)
        for runtime in ("keras", "onnx", "openvino")
    }
    for runtime, probs in answers.items():
        assert probs == pytest.approx(answers["keras"], abs=1e-5), runtime


def test_a_published_version_records_its_drift_reference_as_served(trained):
    """The class mix and confidence histogram of the version's answers on validation, from the
    calibrated model it serves: what the service's drift is measured against."""
    from classifier import drift

    config, result = trained
    reference = result.metadata.drift_reference
    assert reference is not None and reference.recorded_by == "training"
    assert reference.count == 16 and reference.of == "validation"
    store = ModelStore(config.models_dir)
    predictor = load_predictor(store, "toy", 1, RuntimeOptions(runtime="onnx"))
    images = load_split(config.data_dir / "validation", InputSpec(64, 64), progress=False).images
    served = drift.reference(predictor.predict(images), predictor.class_names, 0.5)
    assert dict(reference.class_mix) == served["class_mix"]
    assert list(reference.confidence.fractions) == pytest.approx(
        served["confidence"]["fractions"], abs=1 / 16 + 1e-9
    )
