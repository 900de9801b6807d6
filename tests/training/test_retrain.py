import json
from pathlib import Path

import pytest

from classifier import predictor as predictor_module
from classifier.store import ModelStore
from service.http.app import create_app
from tests.helpers import app_config, jpeg_bytes, make_dataset, publish_model
from training import evaluate, retrain
from training import train as training
from training.config import TrainConfig
from training.data import held_out_dir
from training.scoring import RUNTIME, load_version, score_on, split_folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"))


def config(dataset, models_dir, **overrides) -> TrainConfig:
    settings = {"model_name": "pets", "epochs": 4, "batch_size": 8, "image_size": 64}
    return TrainConfig(data_dir=dataset, models_dir=models_dir, **(settings | overrides))


@pytest.fixture(scope="module")
def good_store(dataset, tmp_path_factory):
    """A store whose champion (v1) was trained properly on the toy data."""
    models = tmp_path_factory.mktemp("good")
    training.train(config(dataset, models))
    return models


def scores(accuracy: float, **recalls: float) -> dict:
    """Held-out scores as the gate reads them: accuracy and each class's recall."""
    return {"accuracy": accuracy, "per_class": {k: {"recall": v} for k, v in recalls.items()}}


GATE = retrain.GateOptions(tolerance=0.01)


def test_gate_decisions_on_accuracy():
    champion = scores(0.80, cats=0.8, dogs=0.8)
    first = retrain.decide(champion, None, GATE)
    assert (first.published, first.rule) == (True, "first_version")
    assert retrain.decide(scores(0.795, cats=0.8, dogs=0.79), champion, GATE).published
    worse = retrain.decide(scores(0.70, cats=0.8, dogs=0.78), champion, GATE)
    assert (worse.published, worse.rule) == (False, "accuracy")
    forced = retrain.decide(scores(0.70, cats=0.8, dogs=0.78), champion, GATE_FORCED)
    assert forced.published and forced.reason.startswith("forced") and forced.rule == "force"


GATE_FORCED = retrain.GateOptions(tolerance=0.01, force=True)


def test_a_worse_challenger_is_not_published(good_store, dataset):
    worse = config(dataset, good_store, epochs=1, learning_rate=1e-9)
    outcome = retrain.retrain(worse)
    decision, metadata, _ = outcome.decision, outcome.metadata, outcome.report
    assert not decision.published and metadata is None
    assert ModelStore(good_store).versions("pets") == [1]
    [folder] = (good_store / "pets" / "reports").iterdir()
    assert outcome.report_dir == folder
    saved = json.loads((folder / "report.json").read_text())
    assert saved["decision"]["published"] is False
    champion = saved["models"]["champion v1"]["scores"]
    assert champion["accuracy"] > saved["models"]["challenger"]["scores"]["accuracy"]
    assert {"precision", "recall", "roc_auc", "confusion_matrix"} <= set(champion)
    page = (folder / "report.html").read_text()
    assert "Not published" in page and "data:image/png;base64," in page
    # which rule decided, both checks, the per-class figures: in the JSON and on the page
    assert saved["decision"]["rule"] == decision.rule in ("accuracy", "class_recall")
    assert [c["rule"] for c in saved["decision"]["checks"]] == ["accuracy", "class_recall"]
    assert saved["class_recall_tolerance"] == 0.05
    assert set(champion["per_class"]) == {"cats", "dogs"} and "macro" in champion
    assert f"(rule: {decision.rule})" in page and "macro average" in page
    # both models' curves and calibration; two classes' precision and recall name their class
    models = saved["models"].values()
    assert all(m["history"]["val_accuracy"] for m in models)
    assert all(0 <= m["calibration"]["expected_calibration_error"] <= 1 for m in models)
    assert "temperature_scaling" in saved["models"]["challenger"]
    assert "precision of dogs" in page and "recall of dogs" in page
    assert "calibration error (ECE)" in page and "temperature scaling, T = " in page


def test_force_publishes_a_worse_challenger_with_its_report(good_store, dataset, capsys):
    code = retrain.main(
        [
            "--data-dir", str(dataset), "--models-dir", str(good_store), "--model-name", "pets",
            "--epochs", "1", "--image-size", "64", "--learning-rate", "1e-9", "--force",
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "published pets v2: forced" in out
    assert f"report: {good_store / 'pets' / '2' / 'report.html'} (and report.json)" in out
    assert "recall of dogs" in out
    meta = ModelStore(good_store).check("pets", 2)
    assert {"report.json", "report.html"} <= set(meta.files)
    assert meta.raw["promotion"]["decision"]["published"] is True
    assert meta.raw["promotion"]["champion_version"] == 1


def test_cli_reports_not_promoted_with_exit_3(good_store, dataset, capsys):
    code = retrain.main(
        [
            "--data-dir", str(dataset), "--models-dir", str(good_store), "--model-name", "pets",
            "--epochs", "1", "--image-size", "64", "--learning-rate", "1e-9", "--tolerance", "0",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    # v2 (forced, weak) now serves: a weak challenger may tie it, a worse one is refused
    assert (code, out.startswith("not published")) in ((3, True), (0, False))


def test_a_better_challenger_is_published_and_the_service_picks_it_up(dataset, tmp_path):
    publish_model(tmp_path, "pets", image_size=64)  # an untrained champion: about chance
    app = create_app(app_config(tmp_path))
    client = app.test_client()

    def served_version() -> str:
        response = client.post("/predict", data=jpeg_bytes(), content_type="image/jpeg")
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.headers["X-Model-Version"]

    assert served_version() == "1"
    outcome = retrain.retrain(config(dataset, tmp_path))
    decision, metadata, _ = outcome.decision, outcome.metadata, outcome.report
    assert decision.published and metadata.version == 2
    app.extensions["loader"].load_all()  # what the poller does every MODEL_POLL_SECONDS
    assert served_version() == "2"


def test_evaluate_any_version(good_store, dataset, tmp_path, capsys):
    out = tmp_path / "eval"
    code = evaluate.main(
        [
            "--data-dir", str(dataset), "--models-dir", str(good_store), "--model-name", "pets",
            "--version", "1", "--output", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    assert "pets v1 on " in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["models"]["v1"]["scores"]["count"] == 16
    assert (out / "report.html").is_file()


def test_evaluate_names_the_versions_there_for_a_missing_one(good_store, dataset, capsys):
    argv = ["--data-dir", str(dataset), "--models-dir", str(good_store), "--model-name", "pets"]
    assert evaluate.main([*argv, "--version", "9"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: model 'pets' has no version 9 in ")
    there = ", ".join(map(str, ModelStore(good_store).versions("pets")))
    assert line.endswith(f"(versions there: {there})") and there.startswith("1")


def test_held_out_prefers_a_test_folder(tmp_path):
    assert split_folder(tmp_path) == tmp_path  # a split itself: its class folders
    (tmp_path / "validation").mkdir()
    assert held_out_dir(tmp_path).name == "validation" == split_folder(tmp_path).name
    (tmp_path / "test").mkdir()
    assert held_out_dir(tmp_path).name == "test" == split_folder(tmp_path).name


def test_challenger_and_champion_are_scored_on_one_runtime(dataset, tmp_path, monkeypatch):
    """The challenger is exported as publishing exports it and loaded as the champion is,
    with the same options: the gate compares two models, not two runtimes. The files it
    scored are the files published."""
    publish_model(tmp_path, "pets", image_size=64)
    loaded = []
    real = predictor_module.load_runtime

    def spy(folder, metadata, options):
        runtime = real(folder, metadata, options)
        loaded.append((Path(folder), metadata, options, runtime.name))
        return runtime

    monkeypatch.setattr(predictor_module, "load_runtime", spy)
    gate = retrain.GateOptions(force=True)
    outcome = retrain.retrain(config(dataset, tmp_path, epochs=1), gate)
    decision, metadata, report = outcome.decision, outcome.metadata, outcome.report
    champion, challenger = loaded
    assert champion[0] == tmp_path / "pets" / "1"
    assert not challenger[0].is_relative_to(tmp_path)  # a temporary export, not a version
    assert champion[2] == challenger[2] == RUNTIME
    assert champion[3] == challenger[3]
    assert decision.published and metadata.version == 2
    for name in ("model.keras", "model.onnx"):
        assert challenger[1].files[name] == metadata.files[name]
    rescored = score_on(load_version(ModelStore(tmp_path), "pets", 2), dataset / "validation")
    assert rescored.scores == report["models"]["challenger"]["scores"]


def test_cli_help_documents_every_option(capsys):
    for module in (retrain, evaluate):
        with pytest.raises(SystemExit):
            module.main(["--help"])
        text = capsys.readouterr().out
        assert "--data-dir" in text
    assert "--tolerance" in retrain.parser().format_help()
    assert "--force" in retrain.parser().format_help()


def test_a_challenger_as_accurate_that_lost_one_class_is_refused():
    """Same accuracy, but 'bee' fell 0.15 (beyond the default 0.05): its users lose."""
    champion = scores(0.80, ant=0.90, bee=0.80, cicada=0.70)
    challenger = scores(0.80, ant=0.90, bee=0.65, cicada=0.85)
    decision = retrain.decide(challenger, champion, GATE)
    assert (decision.published, decision.rule) == (False, "class_recall")
    assert "'bee' 0.8000 -> 0.6500 (-0.1500)" in decision.reason
    assert "'ant'" not in decision.reason and "'cicada'" not in decision.reason
    checks = {c.rule: c.passed for c in decision.checks}
    assert checks == {"accuracy": True, "class_recall": False}
    assert decision.to_dict()["rule"] == "class_recall"
    # a wider tolerance lets it through; --force publishes it and says which rule it broke
    wide = retrain.GateOptions(tolerance=0.01, class_recall_tolerance=0.2)
    assert retrain.decide(challenger, champion, wide).published
    forced = retrain.decide(challenger, champion, GATE_FORCED)
    assert (forced.published, forced.rule) == (True, "force")
    assert forced.reason.startswith("forced: challenger recall fell more than")


def test_a_recall_fall_within_the_tolerance_is_promoted():
    champion = scores(0.80, ant=0.90, bee=0.80, cicada=0.70)
    challenger = scores(0.80, ant=0.90, bee=0.75, cicada=0.75)  # bee falls exactly 0.05
    decision = retrain.decide(challenger, champion, GATE)
    assert (decision.published, decision.rule) == (True, "within_tolerances")
    assert all(c.passed for c in decision.checks)
    assert "largest change: 'bee' 0.8000 -> 0.7500" in decision.reason


def test_both_rules_failing_name_both_and_the_first_decides():
    champion = scores(0.80, ant=0.90, bee=0.70)
    decision = retrain.decide(scores(0.60, ant=0.40, bee=0.80), champion, GATE)
    assert (decision.published, decision.rule) == (False, "accuracy")
    assert "below champion" in decision.reason and "'ant' 0.9000 -> 0.4000" in decision.reason


def test_class_recall_tolerance_is_an_option_with_bounds(tmp_path, capsys):
    p = retrain.parser()
    assert "--class-recall-tolerance" in p.format_help()
    args = training.parse_args(p, ["--data-dir", str(tmp_path), "--class-recall-tolerance", "0.1"])
    assert retrain.build(p, retrain.GateOptions, vars(args)).class_recall_tolerance == 0.1
    assert retrain.GateOptions().class_recall_tolerance == 0.05
    for flag, value in [("--class-recall-tolerance", "1.5"), ("--tolerance", "inf")]:
        with pytest.raises(SystemExit) as info:
            retrain.main(["--data-dir", str(tmp_path), flag, value])
        assert info.value.code == 2
        assert f"{flag}: must lie in [0, 1], got {float(value)}" in capsys.readouterr().err
