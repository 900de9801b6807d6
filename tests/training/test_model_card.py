import json

import numpy as np
import pytest

from classifier.predictor import load_predictor
from classifier.store import ModelStore
from tests.helpers import make_dataset, publish_model
from training import model_card
from training.data import load_split
from training.scoring import probabilities_in_batches, score


def test_confidence_bands_count_confident_answers_and_their_accuracy():
    probs = np.array([0.02, 0.4, 0.6, 0.99])
    labels = np.array([0, 1, 1, 0], dtype=float)
    rows = model_card.confidence_bands(probs, labels, bands=(0.5, 0.9))
    assert rows[0] == {"min_confidence": 0.5, "share": 1.0, "count": 4, "accuracy": 0.5}
    assert rows[1] == {"min_confidence": 0.9, "share": 0.5, "count": 2, "accuracy": 0.5}


def test_card_scores_a_stored_version_and_writes_its_figures(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", per_class=1, val_per_class=6)
    publish_model(tmp_path / "models")
    out = tmp_path / "card"
    code = model_card.main(
        ["--data-dir", str(data / "validation"), "--models-dir", str(tmp_path / "models"),
         "--model-name", "pets", "--output", str(out)]
    )  # fmt: skip
    assert code == 0
    card = json.loads((out / "model_card.json").read_text())
    assert (card["model"], card["version"], card["data"]) == ("pets", 1, "data/validation")
    assert card["scores"]["count"] == 12
    assert sum(b["count"] for b in card["calibration_bins"]) == 12
    assert len(card["other_pictures"]) == len(model_card.other_pictures()) == 8
    assert {o["label"] for o in card["other_pictures"]} <= {"cats", "dogs"}
    for name in ("reliability.png", "other_pictures.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    text = capsys.readouterr().out
    assert "| truth \\ answer | cats | dogs |" in text and "| plain white |" in text
    predictor = load_predictor(ModelStore(tmp_path / "models"), "pets")
    split = load_split(data / "validation", predictor.spec, progress=False)
    probs = probabilities_in_batches(predictor.predict_proba, split.images)
    expected = score(probs, split.labels, predictor.class_names, 0.5)
    assert card["scores"]["confusion_matrix"] == expected["confusion_matrix"]


def test_card_reports_a_missing_model(tmp_path, capsys):
    code = model_card.main(["--data-dir", str(tmp_path), "--models-dir", str(tmp_path)])
    assert code == 2
    assert "no valid version" in capsys.readouterr().err


def test_cli_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        model_card.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data-dir", "--models-dir", "--model-name", "--version", "--output"):
        assert flag in text


def test_without_output_the_card_goes_to_the_models_reports_not_the_checkout(
    tmp_path, capsys, monkeypatch
):
    """Run in a checkout for a user's own model, it must not overwrite the shipped card."""
    data = make_dataset(tmp_path / "data", per_class=1, val_per_class=2)
    publish_model(tmp_path / "models")
    monkeypatch.chdir(tmp_path)
    argv = [
        "--data-dir",
        str(data),
        "--models-dir",
        str(tmp_path / "models"),
        "--model-name",
        "pets",
    ]
    assert model_card.main(argv) == 0
    [folder] = (tmp_path / "models" / "pets" / "reports").iterdir()
    assert folder.name.endswith("-model-card-v1")
    assert (folder / "model_card.json").is_file() and (folder / "reliability.png").is_file()
    assert not (tmp_path / "docs").exists()
    assert f"figures and model_card.json: {folder}" in capsys.readouterr().err
