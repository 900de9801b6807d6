"""Figures and numbers for a model card: calibration, confidence bands, answers off-domain.

python -m training.model_card --data-dir ../shared/data/cats_vs_dogs/validation --version 4 \
    --output docs/model-card

Scores a stored version exactly as the service runs it (its default runtime, `decode_image`),
writes `reliability.png`, `other_pictures.png` and `model_card.json` into `--output` (by
default a new folder under the model's reports/, beside evaluate's), and prints the tables as
Markdown. Two classes: calibration of P(second class). More: calibration of the top answer's
probability (how often an answer given with probability p is right).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import brier_score_loss

from classifier.metadata import Calibration
from classifier.predictor import Predictor
from classifier.preprocess import decode_image
from classifier.store import ModelStore
from training.calibration import plot_reliability, reliability, top_answers
from training.cli import EPILOG, reports_errors
from training.options import new_parser, option, options, parse
from training.plots import pyplot
from training.report import confusion_markdown, data_label, per_class_markdown, reports_folder
from training.scoring import (
    VersionOptions,
    class_probabilities,
    load_version,
    predicted_classes,
    score_on,
    split_folder,
    version_manifest,
)

BANDS = (0.5, 0.7, 0.9, 0.97)


@options
class CardOptions(VersionOptions):
    output: Path | None = option(
        None,
        help="folder for the figures and model_card.json "
        "(default: models/<name>/reports/<time>-model-card-v<N>; the shipped model's card "
        "was written with --output docs/model-card)",
    )


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


def build_card(
    predictor: Predictor,
    data_dir: Path,
    output: Path,
    manifest: list[dict[str, str]] | None = None,
) -> dict:
    """Score the version on `data_dir` (refused on photos its `manifest` says it was trained
    on), write the figures and model_card.json; return the card."""
    output.mkdir(parents=True, exist_ok=True)
    scored = score_on(predictor, data_dir, progress=False, manifest=manifest)
    split, probs = scored.split, scored.probs
    names = list(predictor.class_names)
    binary = len(names) == 2
    threshold = predictor.metadata.threshold
    title = f"{predictor.name} v{predictor.version} on {data_label(data_dir)}"
    calibration = reliability(probs, split.labels, names)
    plot_reliability({"this model": calibration}, output / "reliability.png", title)

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
        "trained_on": (predictor.metadata.training or {}).get("data_manifest"),
        "temperature_scaling": temperature_scaling(predictor.metadata.calibration),
        "calibration_of": calibration.of,
        "scores": scored.scores,
        "brier_score": brier_score(probs, split.labels),
        "expected_calibration_error": calibration.ece,
        "calibration_bins": calibration.to_dict()["bins"],
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


def temperature_scaling(calibration: Calibration | None) -> dict | None:
    """What training recorded of its temperature scaling (None: not calibrated)."""
    if calibration is None:
        return None
    return {
        "temperature": calibration.temperature,
        "fitted_on": calibration.fitted_on,
        "validation_ece": calibration.expected_calibration_error.model_dump(),
    }


def lineage_markdown(trained_on: dict | None) -> list[str]:
    """Photos per split, source and class, from the version's data manifest."""
    if not trained_on:
        return ["(published before data manifests: no lineage recorded)"]
    rows = [
        f"| {split} | {source} | {name} | {count} |"
        for split, by_source in trained_on["counts"].items()
        for source, by_class in by_source.items()
        for name, count in by_class.items()
    ]
    return [
        f"{trained_on['photos']} photos, listed in {trained_on['file']} "
        f"(SHA-256 {trained_on['sha256'][:16]}...)",
        "",
        "| split | source | class | photos |",
        "|---|---|---|---:|",
        *rows,
    ]


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
        *lineage_markdown(card.get("trained_on")),
        "",
        confusion_markdown(s["confusion_matrix"], names),
        "",
    ]
    if "per_class" in s:
        lines += [per_class_markdown(s, names), ""]
    scaling = card.get("temperature_scaling")
    if scaling:
        ece = scaling["validation_ece"]
        lines += [
            f"Temperature scaling: T = {scaling['temperature']:.3f}, fitted on "
            f"{scaling['fitted_on']} (ECE there {ece['before']:.4f} before, "
            f"{ece['after']:.4f} after)",
            "",
        ]
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
    p = new_parser("python -m training.model_card", __doc__, CardOptions, epilog=EPILOG)
    options = parse(p, CardOptions, argv)
    store = ModelStore(options.models_dir)
    predictor = load_version(store, options.model_name, options.version)
    output = options.output or reports_folder(
        store, options.model_name, f"model-card-v{predictor.version}"
    )
    card = build_card(
        predictor, split_folder(options.data_dir), output, version_manifest(store, predictor)
    )
    print(markdown(card))
    print(f"figures and model_card.json: {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
