"""Figures written as files: the one place pyplot is set up, and the training curves."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib's pyplot on the Agg backend: figures go to files, never to a window."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def plot_history(history: dict[str, list[float]], path: Path, title: str = "training") -> None:
    """Loss and accuracy per epoch, training against validation."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "-s")):
            values = history.get(key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def draw_confusion(ax, matrix, class_names: list[str], title: str) -> None:
    """A confusion matrix (rows: truth, columns: answer) with its counts, on `ax`."""
    import numpy as np

    matrix = np.asarray(matrix)
    ax.imshow(matrix, cmap="Blues")
    dark = matrix.max() / 2 if matrix.size else 0
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center", color="white" if n > dark else "black")
    ticks = range(len(class_names))
    many = len(class_names) > 2
    ax.set_xticks(ticks, class_names, rotation=35 if many else 0, ha="right" if many else "center")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("answer")
    ax.set_ylabel("truth")
    ax.set_title(title, fontsize=10)


def plot_confusion(matrix, class_names: list[str], path: Path, title: str) -> None:
    """The confusion matrix as a picture of its own (a version's confusion_matrix.png)."""
    plt = pyplot()
    side = 3.2 + 0.55 * len(class_names)
    fig, ax = plt.subplots(figsize=(side, side))
    draw_confusion(ax, matrix, class_names, title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
