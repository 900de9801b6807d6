"""Three classes end to end: train, publish, the served files, evaluate, the card, retrain."""

import json
import shutil

import keras
import numpy as np
import onnxruntime
import pytest

from classifier.spec import InputSpec
from classifier.store import ModelStore
from tests.helpers import make_dataset
from tests.training.multiclass import CLASSES, make_three_class_dataset
from training import evaluate, model_card, retrain, scoring
from training import train as train_module
from training.config import TrainConfig
from training.data import load_split
from training.scoring import class_probabilities, load_version

NAMES = list(CLASSES)  # "blue sky", "green", "rouge été": folder names, kept as they are


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_three_class_dataset(tmp_path_factory.mktemp("data") / "colours")


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """Trained without --model-name: it is named after its data folder."""
    models = tmp_path_factory.mktemp("models")
    config = TrainConfig(data_dir=data, models_dir=models, epochs=4, batch_size=8, image_size=64)
    return config, train_module.train(config)


def test_published_with_its_classes_and_softmax_head(trained):
    config, result = trained
    meta = result.metadata
    assert (config.model_name, meta.name, meta.version) == ("colours", "colours", 1)
    assert list(meta.class_names) == NAMES
    raw = meta.raw
    assert raw["output"] == {"activation": "softmax", "classes": 3}
    assert raw["threshold"] == 0.5
    assert raw["training"]["loss"] == "sparse_categorical_crossentropy"
    assert raw["training"]["counts"]["validation"] == dict.fromkeys(NAMES, 6)
    validation = raw["metrics"]["validation"]
    assert validation["count"] == 18
    assert np.array(validation["confusion_matrix"]).shape == (3, 3)
    assert list(validation["per_class"]) == NAMES
    assert set(validation["per_class"]["rouge été"]) == {"precision", "recall", "f1", "support"}
    assert {"top_2_accuracy", "macro", "roc_auc", "loss"} <= set(validation)
    assert "top_3_accuracy" not in validation  # k < C only
    assert "precision" not in validation  # the positive class's: two classes only
    assert validation["accuracy"] >= 0.9  # the classes differ by colour: it must learn that
    assert {"confusion_matrix.png", "model.onnx", "model.keras"} <= set(meta.files)
    on_disk = json.loads((config.models_dir / "colours/1/metadata.json").read_text("utf-8"))
    assert on_disk["class_names"] == NAMES


def test_keras_and_onnx_files_give_one_probability_per_class(trained, data):
    config, result = trained
    folder = config.models_dir / "colours" / "1"
    split = load_split(data / "validation", InputSpec(64, 64), progress=False)
    images = split.images.astype(np.float32)
    model = keras.saving.load_model(folder / "model.keras", compile=False, safe_mode=True)
    from_keras = np.asarray(model.predict_on_batch(images))
    session = onnxruntime.InferenceSession(
        str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert session.get_outputs()[0].shape[1:] == [3]  # (None, 3)
    from_onnx = session.run(None, {session.get_inputs()[0].name: images})[0]
    for probs in (from_keras, from_onnx):
        assert probs.shape == (18, 3)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(from_onnx - from_keras).max() <= 1e-5
    # the served model, on the runtime the service picks, answers the same
    predictor = load_version(ModelStore(config.models_dir), "colours")
    served = class_probabilities(predictor, split.images)
    assert served.shape == (18, 3) and np.abs(served - from_keras).max() <= 1e-4
    accuracy = float((served.argmax(axis=1) == split.labels).mean())
    assert accuracy == pytest.approx(result.metrics["validation"]["accuracy"])


def test_evaluate_reports_per_class_and_macro_figures(trained, data, tmp_path, capsys):
    config, result = trained
    out = tmp_path / "eval"
    code = evaluate.main(
        ["--data-dir", str(data), "--models-dir", str(config.models_dir),
         "--model-name", "colours", "--output", str(out)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| truth \\ answer | blue sky | green | rouge été |" in printed
    assert "| class | precision | recall | F1 | support |" in printed
    assert "| macro average |" in printed and "top-2 accuracy" in printed
    report = json.loads((out / "report.json").read_text())
    scores = report["models"]["v1"]["scores"]
    recorded = result.metrics["validation"]
    assert scores["confusion_matrix"] == recorded["confusion_matrix"]
    assert list(scores["per_class"]) == NAMES == report["class_names"]
    assert scores["macro"]["f1"] == pytest.approx(recorded["macro"]["f1"])
    page = (out / "report.html").read_text()
    assert page.count("<th>rouge été</th>") == 3  # per-class row, matrix column and row
    assert "macro average" in page and "top-2 accuracy" in page and "macro F1" in page


def test_model_card_calibrates_the_top_answer(trained, data, tmp_path, capsys):
    config, _ = trained
    out = tmp_path / "card"
    code = model_card.main(
        ["--data-dir", str(data / "validation"), "--models-dir", str(config.models_dir),
         "--model-name", "colours", "--output", str(out)]
    )  # fmt: skip
    assert code == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["class_names"] == NAMES and card["calibration_of"] == "top answer"
    assert sum(b["count"] for b in card["calibration_bins"]) == 18
    assert {o["label"] for o in card["other_pictures"]} <= set(NAMES)
    assert 0 <= card["brier_score"] <= 2
    text = capsys.readouterr().out
    assert "| top answer's probability |" in text and "| macro average |" in text
    assert "| rouge été |" in text and "| plain white |" in text


def test_retrain_scores_and_gates_every_class(trained, data, tmp_path):
    config, _ = trained
    models = tmp_path / "models"
    shutil.copytree(config.models_dir, models)
    challenger = TrainConfig(
        data_dir=data, models_dir=models, epochs=3, batch_size=8, image_size=64
    )
    outcome = retrain.retrain(challenger, retrain.GateOptions(force=True))
    decision, metadata, report = outcome.decision, outcome.metadata, outcome.report
    assert decision.published and metadata.version == 2 and list(metadata.class_names) == NAMES
    assert [c.rule for c in decision.checks] == ["accuracy", "class_recall"]
    for model in report["models"].values():
        assert list(model["scores"]["per_class"]) == NAMES
        assert np.array(model["scores"]["confusion_matrix"]).shape == (3, 3)
    assert metadata.raw["promotion"]["decision"]["rule"] == decision.rule


def test_other_classes_under_the_same_name_are_refused_before_training(
    trained, tmp_path, capsys, monkeypatch
):
    config, _ = trained
    pets = make_dataset(tmp_path / "pets", per_class=2, val_per_class=1)
    before = sorted(p.name for p in (config.models_dir / "colours").iterdir())

    def nothing_is_decoded(*args, **kwargs):
        raise AssertionError("the data was read before the classes were checked")

    monkeypatch.setattr(train_module, "load_split", nothing_is_decoded)
    monkeypatch.setattr(scoring, "load_split", nothing_is_decoded)
    for module in (train_module, retrain):
        code = module.main(
            ["--data-dir", str(pets), "--models-dir", str(config.models_dir),
             "--model-name", "colours"]
        )  # fmt: skip
        assert code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "model 'colours' has classes ['blue sky', 'green', 'rouge été']" in err
        assert "this data has ['cats', 'dogs']" in err
        assert "choose a new --model-name" in err
    assert sorted(p.name for p in (config.models_dir / "colours").iterdir()) == before


def test_a_version_can_be_scored_on_photos_of_some_of_its_classes(trained, data, tmp_path):
    """Training needs every class; scoring a version on a subset of its classes is allowed."""
    config, _ = trained
    some = shutil.copytree(data / "validation", tmp_path / "validation")
    for path in (some / "green").iterdir():
        path.unlink()
    predictor = load_version(ModelStore(config.models_dir), "colours")
    scored = scoring.score_on(predictor, some, progress=False)
    assert scored.scores["count"] == 12 and scored.scores["per_class"]["green"]["support"] == 0
    assert scored.scores["roc_auc"] is None


def test_the_trained_model_is_served_with_its_classes_in_every_form(trained, data):
    """Train, publish, serve: three probabilities summing to 1, names as given, top_k."""
    import base64

    from service.http.app import create_app
    from tests.helpers import app_config

    config, _ = trained
    client = create_app(app_config(config.models_dir, MODEL_NAME="colours")).test_client()
    photo = next((data / "validation" / "rouge été").iterdir()).read_bytes()
    own = client.post("/predict?top_k=2", data=photo, content_type="image/jpeg").get_json()
    [prediction] = own["predictions"]
    assert list(prediction["probabilities"]) == NAMES
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert len(prediction["top"]) == 2 and prediction["label"] == prediction["top"][0]["label"]
    b64 = base64.b64encode(photo).decode()
    tf = client.post("/v1/models/colours:predict", json={"instances": [{"b64": b64}]})
    assert sum(tf.get_json()["predictions"][0]["probabilities"]) == pytest.approx(1, abs=1e-5)
    tensor = {"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64]}
    v2 = client.post("/v2/models/colours/infer", json={"inputs": [tensor]}).get_json()
    outputs = {o["name"]: o["data"] for o in v2["outputs"]}
    assert len(outputs["probabilities"]) == 3 and outputs["label"][0] in NAMES
    assert client.post("/predict?top_k=4", data=photo, content_type="image/jpeg").status_code == 400
