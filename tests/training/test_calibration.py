import numpy as np
import pytest
from scipy.special import expit

from training import calibration


def test_calibration_bins_group_by_predicted_probability():
    probs = np.array([0.05, 0.05, 0.15, 0.95, 0.95, 0.95, 0.95])
    labels = np.array([0, 1, 0, 1, 1, 1, 0], dtype=float)
    bins = calibration.calibration_bins(probs, labels, n_bins=10)
    assert [(b.low, b.count) for b in bins] == [(0.0, 2), (0.1, 1), (0.9, 4)]
    assert bins[0].observed == pytest.approx(0.5) and bins[2].observed == pytest.approx(0.75)
    assert bins[2].mean_predicted == pytest.approx(0.95)
    assert calibration.expected_calibration_error(bins) == pytest.approx(
        (2 * 0.45 + 1 * 0.15 + 4 * 0.2) / 7
    )


def test_probability_one_falls_in_the_last_bin():
    bins = calibration.calibration_bins(np.array([1.0, 0.0]), np.array([1.0, 0.0]), n_bins=4)
    assert [(b.low, b.high) for b in bins] == [(0.0, 0.25), (0.75, 1.0)]
    assert calibration.expected_calibration_error(bins) == pytest.approx(0.0)


def test_a_probability_on_an_edge_falls_in_the_bin_it_starts_for_every_edge():
    """Bins are [low, high): 0.3, 0.6 and 0.7 fell in the bin below, as the edges were
    linspace's 0.30000000000000004, 0.6000000000000001 and 0.7000000000000001."""
    edges = [i / 10 for i in range(10)]
    bins = calibration.calibration_bins(np.array(edges), np.ones(10), n_bins=10)
    assert [(b.low, b.count, b.mean_predicted) for b in bins] == [(e, 1, e) for e in edges]
    assert [b.high for b in bins] == [(i + 1) / 10 for i in range(10)]


def test_fit_temperature_recovers_the_temperature_that_made_the_labels():
    """Labels drawn from sigmoid(z / 2.5) are best explained by T = 2.5."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 6, 40_000)
    labels = (rng.random(40_000) < expit(logits / 2.5)).astype(float)
    assert calibration.fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.05)


def test_fit_temperature_on_softmax_logits_lowers_the_loss_and_keeps_the_answers():
    """Labels drawn from softmax(z); the model says 4 z: T is about 4."""
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (20_000, 3))
    truth = np.array([rng.choice(3, p=p) for p in calibration.probabilities(logits)])
    overconfident = logits * 4
    t = calibration.fit_temperature(overconfident, truth.astype(float))
    assert t == pytest.approx(4, rel=0.05)
    nll = calibration.negative_log_likelihood
    assert nll(overconfident, truth, t) < nll(overconfident, truth, 1.0)
    before = calibration.probabilities(overconfident)
    after = calibration.probabilities(overconfident, t)
    assert (before.argmax(1) == after.argmax(1)).all()
    assert np.allclose(after.sum(1), 1.0)


def test_reliability_of_two_classes_is_of_the_positive_class_and_of_more_the_top_answer():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    two = calibration.reliability(probs, np.array([0.0, 1.0]), ["cats", "dogs"])
    assert two.of == "P(dogs)" and list(two.predicted) == [0.1, 0.8]
    three = calibration.reliability(
        np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]), np.array([0.0, 1.0]), ["a", "b", "c"]
    )
    assert three.of == "top answer" and list(three.predicted) == [0.7, 0.6]
    assert [b.observed for b in three.bins] == [0.0, 1.0]


@pytest.mark.parametrize(
    ("logits", "labels"),
    [
        (np.array([3.0, -2.0, 0.5, -0.1]), np.array([1, 0, 1, 0])),
        (np.array([[2.0, 0.0, -1.0], [0.0, 0.5, 0.4], [-3.0, -2.0, 1.0]]), np.array([0, 1, 2])),
    ],
)
def test_a_validation_set_answered_all_right_keeps_t_at_1(logits, labels):
    """Before: the loss falls all the way to T = 0, and the fit stopped at the search's bound
    (0.05): the published model 20 times as confident, from a few easy photos."""
    assert calibration.separated(logits, labels)
    assert calibration.fit_temperature(logits, labels) == 1.0
    wrong = labels.copy()
    wrong[0] = 1 - wrong[0] if logits.ndim == 1 else 2
    assert not calibration.separated(logits, wrong)
    assert calibration.fit_temperature(logits, wrong) > calibration.TEMPERATURE_RANGE[0] * 1.01
