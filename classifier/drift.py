"""Drift, defined once for training and serving: what a model's answers look like (the class
mix of its answers and a histogram of its top-class probability), and the population
stability index (PSI) between two such distributions.

Training records the distribution of a version's answers on its validation photos in the
version's metadata (`drift_reference`); the service compares the answers it gave lately with
it (service/drift.py). Both sides bin through the functions here, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from classifier.runtimes import answers

CONFIDENCE_BINS = 10  # equal-width bins of the top-class probability, from 1/C to 1
PSI_FLOOR = 1e-4  # an empty bin counts as this fraction (PSI is infinite on a zero)


def confidence_edges(classes: int, bins: int = CONFIDENCE_BINS) -> list[float]:
    """Bin edges of the top-class probability of a C-class model: it lies in [1/C, 1]."""
    return [round(float(e), 6) for e in np.linspace(1.0 / classes, 1.0, bins + 1)]


def histogram(values: np.ndarray, edges: Sequence[float]) -> list[float]:
    """Fractions of `values` in each bin of `edges` (the last bin holds its upper edge; values
    below the first edge count in the first bin)."""
    if len(values) == 0:
        return [0.0] * (len(edges) - 1)
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(index, minlength=len(edges) - 1)
    return (counts / len(values)).tolist()


def class_mix(answered: np.ndarray, classes: int) -> list[float]:
    """Fractions of the answers that went to each class, in class order."""
    if len(answered) == 0:
        return [0.0] * classes
    return (np.bincount(answered, minlength=classes) / len(answered)).tolist()


def psi(expected: Sequence[float], actual: Sequence[float], floor: float = PSI_FLOOR) -> float:
    """Population stability index: sum of (a - e) * ln(a / e) over the bins, each fraction
    floored at `floor`. 0: the same; above 0.2 is the usual sign of a shifted population."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    a = np.maximum(np.asarray(actual, dtype=np.float64), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def reference(
    probs: np.ndarray,
    class_names: Sequence[str],
    threshold: float | None,
    of: str = "validation",
) -> dict:
    """The `drift_reference` metadata section of a version from its class probabilities (n, C)
    on its validation photos, as served (calibrated where it is): the class mix of its answers
    (the threshold decides between two classes, as the service answers; None: the most
    probable) and the histogram of the top-class probability."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(class_names) or len(probs) == 0:
        raise ValueError(f"need probabilities (n, {len(class_names)}), got {probs.shape}")
    answered = answers(probs, threshold if len(class_names) == 2 else None)
    edges = confidence_edges(len(class_names))
    mix = class_mix(np.asarray(answered), len(class_names))
    return {
        "of": of,
        "count": len(probs),
        "class_mix": {name: round(f, 6) for name, f in zip(class_names, mix, strict=True)},
        "confidence": {
            "edges": edges,
            "fractions": [round(f, 6) for f in histogram(probs.max(axis=1), edges)],
        },
    }
