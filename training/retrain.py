"""Retrain, then promote the challenger only if it is not worse than the version serving.

    python -m training.retrain --data-dir my_data --model-name cats_vs_dogs

The challenger is trained with the training code (DIR/train, validated on DIR/validation).
Both it and the champion (the newest valid version) are then scored on the same held-out
split: DIR/test when present, else DIR/validation. The challenger is published when its
accuracy is at most --tolerance below the champion's, or with --force. Either way a report
(report.json and report.html) is written: inside the new version, or under
models/<name>/reports/ when nothing was published. Exit status: 0 published, 3 not.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.errors import ClassifierError
from classifier.metadata import ModelMetadata
from classifier.predictor import load_predictor
from classifier.runtimes import RuntimeOptions
from classifier.store import ModelStore
from training import train as training
from training.data import Split, load_split
from training.report import data_label, now_iso, reports_folder, score, write_report

NOT_PROMOTED = 3


@dataclass
class Decision:
    published: bool
    reason: str

    def to_dict(self) -> dict:
        return {"published": self.published, "reason": self.reason}


def held_out_dir(data_dir: Path) -> Path:
    test = data_dir / "test"
    return test if test.is_dir() else data_dir / "validation"


def decide(challenger: float, champion: float | None, tolerance: float, force: bool) -> Decision:
    """The promotion gate, on held-out accuracy."""
    if champion is None:
        return Decision(True, "no valid version serves yet")
    delta = challenger - champion
    if delta >= -tolerance:
        return Decision(
            True,
            f"challenger accuracy {challenger:.4f} vs champion {champion:.4f} "
            f"({delta:+.4f}, tolerance {tolerance})",
        )
    if force:
        return Decision(
            True,
            f"forced: challenger {challenger:.4f} is {-delta:.4f} below champion {champion:.4f}",
        )
    return Decision(
        False,
        f"challenger accuracy {challenger:.4f} is {-delta:.4f} below champion {champion:.4f}, "
        f"more than the tolerance {tolerance}",
    )


def score_version(
    store: ModelStore, name: str, version: int | None, folder: Path
) -> tuple[ModelMetadata, dict, Split]:
    """Scores of a stored version (the newest valid one by default) on `folder`, read at
    that version's own input size."""
    predictor = load_predictor(store, name, version, RuntimeOptions(runtime="auto"))
    metadata = predictor.metadata
    split = load_split(folder, predictor.spec, list(metadata.class_names))
    probs = predict_in_batches(predictor.predict_proba, split)
    return metadata, score(probs, split.labels, metadata.threshold), split


def champion_scores(
    store: ModelStore, name: str, folder: Path
) -> tuple[ModelMetadata | None, dict | None]:
    """The newest valid version and its scores on `folder`."""
    if store.latest_valid(name) is None:
        return None, None
    metadata, scores, _ = score_version(store, name, None, folder)
    return metadata, scores


def predict_in_batches(run, split: Split, size: int = 64) -> np.ndarray:
    return np.concatenate(
        [run(split.images[i : i + size]) for i in range(0, len(split.images), size)]
    )


def retrain(
    config: training.TrainConfig, tolerance: float = 0.01, force: bool = False
) -> tuple[Decision, ModelMetadata | None, dict]:
    store = ModelStore(config.models_dir)
    folder = held_out_dir(config.data_dir)
    champion, champion_score = champion_scores(store, config.model_name, folder)
    fitted = training.fit(config)
    held_out = load_split(folder, fitted.spec, fitted.train_split.class_names)
    probs = training.predict_probs(fitted.model, held_out.images)
    challenger_score = score(probs, held_out.labels, config.threshold)
    decision = decide(
        challenger_score["accuracy"],
        champion_score["accuracy"] if champion_score else None,
        tolerance,
        force,
    )
    models = {"challenger": {"scores": challenger_score, "history": fitted.history}}
    if champion is not None:
        models = {f"champion v{champion.version}": {"scores": champion_score}, **models}
    report = {
        "title": f"Retraining {config.model_name}",
        "data": data_label(folder),
        "class_names": fitted.train_split.class_names,
        "created_at": now_iso(),
        "tolerance": tolerance,
        "champion_version": champion.version if champion else None,
        "models": models,
        "decision": decision.to_dict(),
    }
    if not decision.published:
        write_report(reports_folder(store, config.model_name, "not-promoted"), report)
        return decision, None, report

    def extra(version_folder: Path) -> dict:
        write_report(version_folder, report)
        return {
            "promotion": {
                "held_out": report["data"],
                "champion_version": report["champion_version"],
                "decision": decision.to_dict(),
                "scores": {k: v["scores"] for k, v in models.items()},
            }
        }

    return decision, training.publish(config, fitted, extra), report


def parser() -> argparse.ArgumentParser:
    p = training.parser(prog="python -m training.retrain", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="how far below the champion's held-out accuracy the challenger may be",
    )
    p.add_argument(
        "--force", action="store_true", help="publish the challenger even if it is worse"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = training.parse_args(p, argv)
    config = training.config_from(p, args, argv)
    try:
        decision, metadata, _ = retrain(config, args.tolerance, args.force)
    except ClassifierError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if metadata is not None:
        print(f"published {metadata.name} v{metadata.version}: {decision.reason}")
        return 0
    print(f"not published: {decision.reason}")
    return NOT_PROMOTED


if __name__ == "__main__":
    sys.exit(main())
