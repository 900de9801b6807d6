"""Drift's definitions, shared by training and serving: bins, class mix, PSI, reference."""

import numpy as np
import pytest

from classifier import drift
from classifier.metadata import DriftReference


def test_confidence_edges_span_the_top_class_probability():
    assert drift.confidence_edges(2) == pytest.approx(np.linspace(0.5, 1, 11))
    edges = drift.confidence_edges(4)
    assert edges[0] == 0.25 and edges[-1] == 1.0 and len(edges) == 11


def test_histogram_puts_one_in_the_last_bin_and_sums_to_one():
    edges = drift.confidence_edges(2)
    fractions = drift.histogram(np.array([0.5, 0.52, 0.97, 1.0]), edges)
    assert fractions[0] == 0.5 and fractions[-1] == 0.5 and sum(fractions) == pytest.approx(1)
    assert drift.histogram(np.array([]), edges) == [0.0] * 10


def test_psi_is_zero_for_the_same_mix_and_grows_with_the_shift():
    assert drift.psi([0.5, 0.5], [0.5, 0.5]) == 0
    small, large = drift.psi([0.5, 0.5], [0.55, 0.45]), drift.psi([0.5, 0.5], [0.95, 0.05])
    assert 0 < small < 0.05 < 0.2 < large
    # (0.9 - 0.5) ln(0.9 / 0.5) + (0.1 - 0.5) ln(0.1 / 0.5), the textbook formula
    assert drift.psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.4 * np.log(1.8) + 0.4 * np.log(5))
    assert np.isfinite(drift.psi([0.5, 0.5], [1.0, 0.0]))  # an empty bin is floored


def test_reference_answers_as_the_service_does_and_fits_the_metadata_model():
    probs = np.array([[0.7, 0.3], [0.45, 0.55], [0.1, 0.9], [0.6, 0.4]])
    ref = drift.reference(probs, ("cats", "dogs"), threshold=0.5)
    assert ref["class_mix"] == {"cats": 0.5, "dogs": 0.5} and ref["count"] == 4
    assert sum(ref["confidence"]["fractions"]) == pytest.approx(1)
    # a threshold of 0.6 turns the 0.55 answer into cats: the reference follows the threshold
    assert drift.reference(probs, ("cats", "dogs"), threshold=0.6)["class_mix"]["cats"] == 0.75
    DriftReference.model_validate(ref)
    three = drift.reference(np.array([[0.2, 0.5, 0.3]]), ("a", "b", "c"), threshold=0.9)
    assert three["class_mix"] == {"a": 0, "b": 1, "c": 0}  # softmax: the most probable
    with pytest.raises(ValueError):
        drift.reference(np.zeros((0, 2)), ("cats", "dogs"), 0.5)
