"""The model the repository ships: it loads, answers, and its recorded metrics are true."""

import numpy as np
import pytest

from classifier.store import ModelStore
from tests.helpers import SHIPPED_MODELS
from training.data import load_split


@pytest.fixture(scope="module")
def predictor():
    return ModelStore(SHIPPED_MODELS).load("cats_vs_dogs")


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
    assert validation["accuracy"] >= 0.70  # the book's baseline for this network
    matrix = np.array(validation["confusion_matrix"])
    assert matrix.sum() == validation["count"] == 1000
    assert np.trace(matrix) / matrix.sum() == pytest.approx(validation["accuracy"])
    assert meta["training"]["counts"]["train"] == {"cats": 1000, "dogs": 1000}


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
