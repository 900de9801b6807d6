"""The model the repository ships: it loads, answers, and its recorded metrics are true."""

import json

import numpy as np
import pytest

from classifier.predictor import load_predictor
from classifier.preprocess import decode_image
from classifier.store import ModelStore
from tests.helpers import REPO, SHIPPED_MODELS
from training.data import load_split


@pytest.fixture(scope="module")
def predictor():
    return load_predictor(ModelStore(SHIPPED_MODELS), "cats_vs_dogs")


def test_shipped_model_loads_and_answers(predictor):
    assert predictor.class_names == ("cats", "dogs")
    assert predictor.spec.shape == (150, 150, 3)
    images = np.random.default_rng(0).integers(0, 256, (2, 150, 150, 3), dtype=np.uint8)
    probs = predictor.predict_proba(images)
    assert probs.shape == (2,) and np.isfinite(probs).all()
    assert ((probs >= 0) & (probs <= 1)).all()


def test_recorded_metrics_are_consistent(predictor):
    meta = predictor.metadata.raw
    validation = meta["metrics"]["validation"]
    assert validation["accuracy"] >= 0.93  # the goal: 19 of 20 right, at least 93%
    matrix = np.array(validation["confusion_matrix"])
    assert matrix.sum() == validation["count"] == 1000
    assert np.trace(matrix) / matrix.sum() == pytest.approx(validation["accuracy"])
    # the whole Kaggle training set but numbers 4001-5000 (validation, and reserved), less
    # its exact duplicates and its copies of validation photos (training.kaggle_data)
    assert meta["training"]["counts"]["train"] == {"cats": 11495, "dogs": 11497}
    assert meta["training"]["data_manifest"]["photos"] == 11495 + 11497 + 1000
    assert meta["calibration"]["expected_calibration_error"]["after"] < 0.03


def test_model_card_quotes_the_served_version_and_its_recorded_metrics(predictor):
    """docs/model-card.md and its numbers (model_card.json, re-scored by training.model_card)
    describe the version that serves by default, and agree with its metadata."""
    card = json.loads((REPO / "docs/model-card/model_card.json").read_text())
    recorded = predictor.metadata.raw["metrics"]["validation"]
    assert (card["model"], card["version"]) == (predictor.name, predictor.version)
    assert card["scores"]["confusion_matrix"] == recorded["confusion_matrix"]
    assert card["scores"]["accuracy"] == pytest.approx(recorded["accuracy"])
    text = (REPO / "docs/model-card.md").read_text()
    assert f"version {predictor.version}" in text
    assert f"{recorded['accuracy']:.1%}" in text
    (tn, fp), (fn, tp) = recorded["confusion_matrix"]
    assert f"| cats | {tn} | {fp} |" in text and f"| dogs | {fn} | {tp} |" in text


@pytest.mark.shared_data
def test_recorded_accuracy_reproduces_on_the_validation_photos(predictor, shared_data):
    split = load_split(shared_data / "validation", predictor.spec, progress=False)
    probs = np.concatenate(
        [
            predictor.predict_proba(split.images[i : i + 100])
            for i in range(0, len(split.images), 100)
        ]
    )
    accuracy = float(((probs >= predictor.metadata.threshold) == split.labels.astype(bool)).mean())
    recorded = predictor.metadata.raw["metrics"]["validation"]["accuracy"]
    assert accuracy == pytest.approx(recorded, abs=0.002)


@pytest.mark.parametrize(("recipe", "version"), [("shipped", None), ("small-data", 3)])
def test_each_recipe_is_what_trained_its_shipped_version(predictor, recipe, version):
    """`--recipe shipped` reproduces the settings recorded in the default model's metadata,
    `--recipe small-data` those of version 3 (which was trained as `shipped` before v4)."""
    from training.config import RECIPES

    metadata = (
        predictor.metadata
        if version is None
        else ModelStore(SHIPPED_MODELS).check("cats_vs_dogs", version)
    )
    recorded = metadata.raw["training"]
    settings = dict(RECIPES[recipe])
    ranges = recorded["augmentation_ranges"]
    for key in ("rotation", "zoom", "translation", "contrast"):
        assert settings.pop(key) == ranges[key], key
    assert settings.pop("precision") == "auto" and recorded["precision"] == "mixed_bfloat16"
    for key, value in settings.items():
        assert recorded[key] == value, key
    assert recorded["seed"] == 1337
    if version is None:
        assert " --recipe shipped" in recorded["command"]


def test_the_sample_photos_are_what_their_names_say(predictor):
    """samples/ (the README's quick start sends them): the served model gets both right,
    and they stay small."""
    for name, label in (("cat.jpg", "cats"), ("dog.jpg", "dogs")):
        data = (REPO / "samples" / name).read_bytes()
        assert len(data) < 64 * 1024
        probs = predictor.predict(decode_image(data, predictor.spec)[None])
        assert predictor.labels(probs) == [label], (name, probs)


def test_the_default_model_never_saw_the_validation_or_the_reserved_photos(predictor):
    """Its data manifest: trained on Kaggle numbers 0-4000 and 5001-12499 only, validated on
    4001-4500; 4501-5000 (reserved for independent evaluation) appear nowhere."""
    import re

    from training.lineage import read_manifest

    rows = read_manifest(SHIPPED_MODELS / "cats_vs_dogs" / str(predictor.version))
    numbers = {"train": set(), "validation": set()}
    for row in rows:
        number = int(re.fullmatch(r"(?:cat|dog)\.(\d+)\.jpg", row["path"].rsplit("/", 1)[1])[1])
        numbers[row["split"]].add(number)
    assert all(n <= 4000 or 5001 <= n <= 12499 for n in numbers["train"])
    assert numbers["validation"] == set(range(4001, 4501))
    trained = {row["sha256"] for row in rows if row["split"] == "train"}
    assert not trained & {row["sha256"] for row in rows if row["split"] == "validation"}
