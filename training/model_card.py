"""Figures and numbers for a model card: calibration, confidence bands, answers off-domain.

python -m training.model_card --data-dir ../shared/data/cats_vs_dogs/validation --version 3

Scores a stored version exactly as the service runs it (its default runtime, `decode_image`),
writes `reliability.png`, `other_pictures.png` and `model_card.json` into `--output`, and
prints the tables as Markdown. Two classes: calibration of P(second class). More: calibration
of the top answer's probability (how often an answer given with probability p is right).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import brier_score_loss

from classifier.predictor import Predictor
from classifier.preprocess import decode_image
from classifier.store import ModelStore
from training.cli import reports_errors
from training.options import new_parser, option, options, parse
from training.plots import pyplot
from training.report import confusion_markdown, data_label, per_class_markdown
from training.scoring import (
    VersionOptions,
    as_class_probabilities,
    class_probabilities,
    load_version,
    predicted_classes,
    score_on,
    split_folder,
)

BANDS = (0.5, 0.7, 0.9, 0.97)


@options
class CardOptions(VersionOptions):
    output: Path = option(Path("docs/model-card"), help="folder for figures and JSON")


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    count: int
    mean_predicted: float  # mean predicted probability in the bin
    observed: float  # how often the event happened: the positive class, or a right answer


def calibration_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> list[Bin]:
    """Equal-width bins of a predicted probability (P(positive), or the top answer's) against
    0/1 outcomes (the positive class, or a right answer); empty bins are left out."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
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


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Two classes: mean (P(positive) - truth)^2, as scikit-learn; more: the mean over photos
    of the squared distance from the class probabilities to the one-hot truth."""
    if probs.shape[1] == 2:
        return float(brier_score_loss(labels, probs[:, 1]))
    truth = np.eye(probs.shape[1])[labels.astype(int)]
    return float(np.mean(np.sum((probs - truth) ** 2, axis=1)))


def confidence_bands(
    probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5, bands=BANDS
) -> list[dict]:
    """For answers whose top probability is at least each band: how many, how often right."""
    confidence, correct = top_answers(probs, labels, threshold)
    rows = []
    for band in bands:
        mask = confidence >= band
        rows.append(
            {
                "min_confidence": band,
                "share": float(mask.mean()),
                "count": int(mask.sum()),
                "accuracy": float(correct[mask].mean()) if mask.any() else None,
            }
        )
    return rows


def other_pictures() -> list[tuple[str, bytes]]:
    """Pictures that are neither cats nor dogs: photos bundled with installed libraries, and
    synthetic ones. Nothing is downloaded."""
    import io

    import sklearn.datasets
    from matplotlib import cbook
    from PIL import Image

    photos = [
        (
            "building (scikit-learn china.jpg)",
            Path(sklearn.datasets.__file__).parent / "images/china.jpg",
        ),
        (
            "flower (scikit-learn flower.jpg)",
            Path(sklearn.datasets.__file__).parent / "images/flower.jpg",
        ),
        (
            "person (matplotlib grace_hopper.jpg)",
            Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
        ),
    ]
    pictures = [(name, path.read_bytes()) for name, path in photos]

    def png(image: Image.Image) -> bytes:
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()

    rng = np.random.default_rng(0)
    pictures += [
        ("plain white", png(Image.new("RGB", (300, 300), "white"))),
        ("plain black", png(Image.new("RGB", (300, 300), "black"))),
        ("mid grey", png(Image.new("RGB", (300, 300), (128, 128, 128)))),
        ("random noise", png(Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)))),
        (
            "colour gradient",
            png(
                Image.fromarray(
                    np.stack(
                        [*np.meshgrid(np.arange(256), np.arange(256)), np.full((256, 256), 128)],
                        axis=-1,
                    ).astype(np.uint8)
                )
            ),
        ),
    ]
    return pictures


def plot_reliability(
    bins: list[Bin],
    probs: np.ndarray,
    path: Path,
    title: str,
    predicted: str = "predicted P(dog)",
    observed: str = "observed fraction of dogs",
) -> None:
    """Predicted against observed frequency per bin, over the histogram of predictions."""
    plt = pyplot()
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(5.5, 6.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    ax.plot([b.mean_predicted for b in bins], [b.observed for b in bins], "-o", label="this model")
    ax.set_ylabel(observed)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    hist.hist(probs, bins=20, range=(0, 1), color="tab:blue", alpha=0.7)
    hist.set_xlabel(predicted)
    hist.set_ylabel("photos")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_others(items: list[tuple[str, np.ndarray, str]], path: Path) -> None:
    """Each picture with its caption (what the model answered)."""
    plt = pyplot()
    cols = 4
    rows = -(-len(items) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.6, rows * 2.9))
    for ax in axes.flat[len(items) :]:
        ax.axis("off")
    for ax, (name, image, caption) in zip(axes.flat, items):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.imshow(image)
        ax.set_title(f"{name.split(' (')[0]}\n{caption}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def build_card(predictor: Predictor, data_dir: Path, output: Path) -> dict:
    """Score the version on `data_dir`, write the figures and model_card.json; return the card."""
    output.mkdir(parents=True, exist_ok=True)
    scored = score_on(predictor, data_dir, progress=False)
    split, probs = scored.split, scored.probs
    names = list(predictor.class_names)
    binary = len(names) == 2
    threshold = predictor.metadata.threshold
    title = f"{predictor.name} v{predictor.version} on {data_label(data_dir)}"
    if binary:
        positive = names[1]
        bins = calibration_bins(probs[:, 1], split.labels)
        plot_reliability(
            bins, probs[:, 1], output / "reliability.png", title,
            f"predicted P({positive})", f"observed fraction of {positive}",
        )  # fmt: skip
    else:
        confidence, correct = top_answers(probs, split.labels)
        bins = calibration_bins(confidence, correct.astype(float))
        plot_reliability(
            bins, confidence, output / "reliability.png", title,
            "probability of the top answer", "observed accuracy",
        )  # fmt: skip

    others = []
    for name, body in other_pictures():
        image = decode_image(body, predictor.spec)
        others.append((name, image, class_probabilities(predictor, image[None])[0]))
    answers = [predicted_classes(p[None], threshold)[0] for _, _, p in others]
    captions = [
        f"P({names[1]}) = {p[1]:.2f}" if binary else f"{names[a]} ({p[a]:.2f})"
        for (_, _, p), a in zip(others, answers)
    ]
    plot_others(
        [(name, image, c) for (name, image, _), c in zip(others, captions)],
        output / "other_pictures.png",
    )

    card = {
        "model": predictor.name,
        "version": predictor.version,
        "data": data_label(data_dir),
        "class_names": names,
        "calibration_of": f"P({names[1]})" if binary else "top answer",
        "scores": scored.scores,
        "brier_score": brier_score(probs, split.labels),
        "expected_calibration_error": expected_calibration_error(bins),
        "calibration_bins": [b.__dict__ for b in bins],
        "confidence_bands": confidence_bands(probs, split.labels, threshold),
        "other_pictures": [
            {
                "picture": name,
                **({f"p_{names[1]}": round(float(p[1]), 4)} if binary else {}),
                "label": names[a],
                "confidence": round(float(p[a]), 4),
            }
            for (name, _, p), a in zip(others, answers)
        ],
    }
    (output / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def markdown(card: dict) -> str:
    s = card["scores"]
    names = card["class_names"]
    calibration = card["calibration_of"]
    if len(names) == 2:
        head = f"precision {s['precision']:.4f}, recall {s['recall']:.4f}"
    else:
        tops = [k for k in s if k.startswith("top_") and k.endswith("_accuracy")]
        head = ", ".join(f"top-{k.split('_')[1]} accuracy {s[k]:.4f}" for k in tops)
        head += f", macro F1 {s['macro']['f1']:.4f}"
    auc = f"{s['roc_auc']:.4f}" if s.get("roc_auc") is not None else "-"
    lines = [
        f"accuracy {s['accuracy']:.4f}, {head}, ROC AUC {auc}, Brier {card['brier_score']:.4f}, "
        f"ECE {card['expected_calibration_error']:.4f}",
        "",
        confusion_markdown(s["confusion_matrix"], names),
        "",
    ]
    if "per_class" in s:
        lines += [per_class_markdown(s, names), ""]
    if calibration == "top answer":
        lines += [
            "| top answer's probability | photos | mean probability | observed accuracy |",
            "|---|---:|---:|---:|",
        ]
    else:
        lines += [
            f"| {calibration} bin | photos | mean {calibration} | observed {names[1]} |",
            "|---|---:|---:|---:|",
        ]
    lines += [
        f"| {b['low']:.1f}-{b['high']:.1f} | {b['count']} | {b['mean_predicted']:.3f} | "
        f"{b['observed']:.3f} |"
        for b in card["calibration_bins"]
    ]
    lines += ["", "| top probability at least | share of photos | accuracy |", "|---|---:|---:|"]
    lines += [
        f"| {r['min_confidence']:.2f} | {r['share']:.1%} | "
        + (f"{r['accuracy']:.1%}" if r["accuracy"] is not None else "-")
        + " |"
        for r in card["confidence_bands"]
    ]
    key = next((k for k in card["other_pictures"][0] if k.startswith("p_")), None)
    if key is not None:
        lines += ["", f"| picture | {key.replace('p_', 'P(')}) | answer |", "|---|---:|---|"]
        lines += [
            f"| {o['picture']} | {o[key]:.2f} | {o['label']} |" for o in card["other_pictures"]
        ]
    else:
        lines += ["", "| picture | answer | its probability |", "|---|---|---:|"]
        lines += [
            f"| {o['picture']} | {o['label']} | {o['confidence']:.2f} |"
            for o in card["other_pictures"]
        ]
    return "\n".join(lines)


@reports_errors
def main(argv: list[str] | None = None) -> int:
    p = new_parser("python -m training.model_card", __doc__, CardOptions)
    options = parse(p, CardOptions, argv)
    predictor = load_version(ModelStore(options.models_dir), options.model_name, options.version)
    card = build_card(predictor, split_folder(options.data_dir), options.output)
    print(markdown(card))
    return 0


if __name__ == "__main__":
    sys.exit(main())
