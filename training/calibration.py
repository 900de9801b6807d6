"""Calibration: how far a model's probabilities are from how often it is right, and
temperature scaling to bring them closer.

Temperature scaling divides the output layer's logits by one number T fitted on the
validation photos. The answers do not change where they are decided at a logit of 0 (a
softmax's most probable class, a sigmoid's threshold of 0.5: the order and the sign of the
logits stay); with another --threshold, a sigmoid's answers move with the probabilities. The fitted T
is folded into the output layer's weights (W/T, b/T) before export, so every runtime and
every server that reads `model.onnx` (ONNX Runtime, OpenVINO, TensorFlow, the peers in
../shared/peers) returns the calibrated probabilities without knowing about T; the metadata
records T and the calibration error before and after.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax

from training.plots import pyplot
from training.scoring import as_class_probabilities, predicted_classes

N_BINS = 10
# T is searched on a log scale between these: anything outside means something else is wrong.
TEMPERATURE_RANGE = (0.05, 20.0)


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    count: int
    mean_predicted: float  # mean predicted probability in the bin
    observed: float  # how often the event happened: the positive class, or a right answer


def calibration_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> list[Bin]:
    """Equal-width bins of a predicted probability (P(positive), or the top answer's) against
    0/1 outcomes (the positive class, or a right answer); empty bins are left out."""
    edges = np.arange(n_bins + 1) / n_bins  # 3/10 is 0.3; linspace's 0.30000000000000004 took it
    which = np.clip(np.digitize(probs, edges[1:-1], right=False), 0, n_bins - 1)
    bins = []
    for i in range(n_bins):
        mask = which == i
        if mask.any():
            bins.append(
                Bin(
                    float(edges[i]),
                    float(edges[i + 1]),
                    int(mask.sum()),
                    float(probs[mask].mean()),
                    float(labels[mask].mean()),
                )
            )
    return bins


def expected_calibration_error(bins: list[Bin]) -> float:
    """Count-weighted mean gap between predicted and observed frequency."""
    total = sum(b.count for b in bins)
    return float(sum(b.count * abs(b.mean_predicted - b.observed) for b in bins) / total)


def top_answers(
    probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Each answer's probability (the top class's; max(p, 1 - p) with two) and whether it
    is right; `probs` is (n, C), or P(positive) (n,) for two classes."""
    probs = as_class_probabilities(probs) if probs.ndim == 1 else probs
    correct = predicted_classes(probs, threshold) == labels.astype(int)
    return probs.max(axis=1), correct


@dataclass(frozen=True)
class Reliability:
    """What is calibrated (two classes: P(second class); more: the top answer's probability),
    its bins and its expected calibration error (ECE, 10 bins)."""

    of: str
    predicted: np.ndarray
    bins: list[Bin]

    @property
    def ece(self) -> float:
        return expected_calibration_error(self.bins)

    def to_dict(self) -> dict:
        return {
            "of": self.of,
            "expected_calibration_error": self.ece,
            "bins": [asdict(b) for b in self.bins],
        }


def reliability(probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> Reliability:
    """Calibration of class probabilities (n, C) against labels 0..C-1."""
    if len(class_names) == 2:
        return Reliability(
            f"P({class_names[1]})", probs[:, 1], calibration_bins(probs[:, 1], labels)
        )
    confidence, correct = top_answers(probs, labels)
    return Reliability(
        "top answer", confidence, calibration_bins(confidence, correct.astype(float))
    )


def plot_reliability(curves: dict[str, Reliability], path: Path, title: str) -> None:
    """Predicted against observed frequency per bin for each curve, over the histogram of the
    first curve's predictions."""
    plt = pyplot()
    first = next(iter(curves.values()))
    binary = first.of != "top answer"
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(5.5, 6.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    for label, curve in curves.items():
        ax.plot(
            [b.mean_predicted for b in curve.bins],
            [b.observed for b in curve.bins],
            "-o",
            label=f"{label} (ECE {curve.ece:.3f})",
        )
    positive = first.of[2:-1] if binary else None
    ax.set_ylabel(f"observed fraction of {positive}" if binary else "observed accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    hist.hist(first.predicted, bins=20, range=(0, 1), color="tab:blue", alpha=0.7)
    hist.set_xlabel(f"predicted {first.of}" if binary else "probability of the top answer")
    hist.set_ylabel("photos")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities (n, C) of a sigmoid's (n,) or a softmax's (n, C) logits over T."""
    if logits.ndim == 1:
        return as_class_probabilities(expit(logits / temperature))
    return np.exp(log_softmax(logits / temperature, axis=1))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    probs = probabilities(logits, temperature)
    picked = probs[np.arange(len(labels)), labels.astype(int)]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def separated(logits: np.ndarray, labels: np.ndarray) -> bool:
    """Every label's logit strictly above the others (a sigmoid's on its side of 0): the
    cross-entropy then falls all the way to T = 0, so no temperature can be fitted."""
    labels = labels.astype(int)
    if logits.ndim == 1:
        return bool(np.all(np.where(labels == 1, logits > 0, logits < 0)))
    right = logits[np.arange(len(labels)), labels]
    others = np.where(np.eye(logits.shape[1], dtype=bool)[labels], -np.inf, logits)
    return bool(np.all(right > others.max(axis=1)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimises the cross-entropy of softmax(logits / T) (a sigmoid's alike); 1
    where every photo is answered right (`separated`): the fit would only sharpen the
    answers, to the search's bound (20 times as confident from four easy photos)."""
    if separated(logits, labels):
        return 1.0
    low, high = np.log(TEMPERATURE_RANGE)
    found = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(found.x))
