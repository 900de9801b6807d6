"""Scores of class probabilities: two classes keep their figures, every model gets per-class
and macro figures, more classes top-k accuracy."""

import numpy as np
import pytest

from training.report import markdown_tables
from training.scoring import as_class_probabilities, class_probabilities, cross_entropy, score

NAMES = ["ant", "bee", "cicada"]


def test_three_classes_per_class_macro_top_k_and_the_matrix():
    probs = np.array(
        [
            [0.7, 0.2, 0.1],  # ant -> ant
            [0.5, 0.4, 0.1],  # ant -> ant
            [0.6, 0.3, 0.1],  # bee -> ant (bee second)
            [0.1, 0.8, 0.1],  # bee -> bee
            [0.1, 0.3, 0.6],  # cicada -> cicada
            [0.5, 0.1, 0.4],  # cicada -> ant (cicada second)
        ]
    )
    labels = np.array([0, 0, 1, 1, 2, 2], dtype=np.float32)
    s = score(probs, labels, NAMES)
    assert s["count"] == 6 and s["accuracy"] == pytest.approx(4 / 6)
    assert s["top_2_accuracy"] == 1.0 and "top_3_accuracy" not in s
    assert s["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [1, 0, 1]]
    assert list(s["per_class"]) == NAMES
    assert s["per_class"]["ant"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3),
                                     "support": 2}  # fmt: skip
    assert s["per_class"]["bee"]["recall"] == 0.5 and s["per_class"]["bee"]["precision"] == 1.0
    assert s["macro"]["recall"] == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    assert s["macro"]["precision"] == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    assert 0.5 < s["roc_auc"] <= 1.0
    assert "precision" not in s and "recall" not in s  # the positive class's: two classes only


def test_two_classes_keep_their_figures_and_gain_per_class_ones():
    p = np.array([0.9, 0.8, 0.3, 0.6, 0.2])  # P(dogs)
    labels = np.array([1, 1, 1, 0, 0], dtype=np.float32)
    s = score(p, labels, ["cats", "dogs"], threshold=0.5)
    assert {"count", "accuracy", "precision", "recall", "roc_auc", "confusion_matrix"} <= set(s)
    assert s["confusion_matrix"] == [[1, 1], [1, 2]]
    assert s["precision"] == s["per_class"]["dogs"]["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == s["per_class"]["dogs"]["recall"] == pytest.approx(2 / 3)
    assert s["per_class"]["cats"]["recall"] == 0.5  # the specificity, as a recall
    assert s["macro"]["recall"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert not any(k.startswith("top_") for k in s)
    # a (n, 2) array of class probabilities scores the same; the threshold still decides
    assert score(as_class_probabilities(p), labels, ["cats", "dogs"]) == s
    assert score(p, labels, ["cats", "dogs"], threshold=0.95)["per_class"]["dogs"]["recall"] == 0


def test_a_missing_class_leaves_roc_auc_out_and_recall_zero():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]])
    s = score(probs, np.array([0.0, 1.0]), NAMES)
    assert s["roc_auc"] is None and s["per_class"]["cicada"]["support"] == 0
    with pytest.raises(ValueError, match="2 probabilities per image for 3 classes"):
        score(probs[:, :2], np.array([0.0, 1.0]), NAMES)


def test_class_probabilities_of_a_sigmoid_and_a_softmax():
    class Multi:
        def predict(self, images):
            return np.array([[0.2, 0.3, 0.5]])

    assert as_class_probabilities(np.array([0.25, 1.0])).tolist() == [[0.75, 0.25], [0.0, 1.0]]
    assert class_probabilities(Multi(), None).tolist() == [[0.2, 0.3, 0.5]]
    assert as_class_probabilities(np.array([[0.25]])).tolist() == [[0.75, 0.25]]


def test_cross_entropy_is_binary_for_two_classes_and_categorical_for_more():
    p = np.array([0.9, 0.2])
    labels = np.array([1.0, 0.0])
    binary = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    assert cross_entropy(as_class_probabilities(p), labels) == pytest.approx(binary)
    probs = np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
    assert cross_entropy(probs, np.array([1.0, 2.0])) == pytest.approx(
        -(np.log(0.25) + np.log(0.8)) / 2
    )


def test_the_printed_tables():
    probs = np.eye(3)[[0, 1, 2, 2]]
    text = markdown_tables(score(probs, np.array([0.0, 1.0, 2.0, 2.0]), NAMES), NAMES)
    assert text.startswith("accuracy 1.0000, top-2 accuracy 1.0000, macro precision 1.0000")
    assert "| cicada | 1.0000 | 1.0000 | 1.0000 | 2 |" in text
    assert "| macro average | 1.0000 | 1.0000 | 1.0000 | 4 |" in text
    assert (
        "| truth \\ answer | ant | bee | cicada |\n|---|---:|---:|---:|\n| ant | 1 | 0 | 0 |"
        in text
    )


def test_macro_figures_leave_out_what_a_class_was_not_measured_on():
    """Photos of one class only: the others' recall is not measured (before: counted as 0, a
    macro recall of 0.5 beside an accuracy of 1.0); a class answered but absent keeps its
    precision of 0 (its answers were all wrong)."""
    right = score(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([0, 0]), ["cats", "dogs"])
    assert right["accuracy"] == 1.0
    assert right["macro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    one_wrong = score(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]), ["cats", "dogs"])
    assert one_wrong["macro"]["recall"] == 0.5  # cats only: 1 of 2
    assert one_wrong["macro"]["precision"] == pytest.approx((1.0 + 0.0) / 2)
