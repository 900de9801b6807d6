"""Retrain, then promote the challenger only if it is not worse than the version serving.

    python -m training.retrain --data-dir my_data --model-name cats_vs_dogs

The challenger is trained with the training code (DIR/train, validated on DIR/validation).
Both it and the champion (the newest valid version) are then scored on the same held-out
split, DIR/test when present, else DIR/validation, and on the same runtime: the challenger
as exported for publishing, and those very files are what is published. The challenger is published when its
accuracy is at most --tolerance below the champion's, or with --force. Either way a report
(report.json and report.html) is written: inside the new version, or under
models/<name>/reports/ when nothing was published. Exit status: 0 published, 3 not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from classifier.metadata import ModelMetadata
from classifier.store import ModelStore
from training import train as training
from training.cli import reports_errors
from training.data import held_out_dir
from training.options import add_options, build, check_fields, option, options
from training.report import data_label, now_iso, reports_folder, write_report
from training.scoring import Scored, load_export, load_version, score_on

NOT_PROMOTED = 3


@options
class GateOptions:
    """When a challenger is published."""

    tolerance: float = option(
        0.01, help="how far below the champion's held-out accuracy the challenger may be"
    )
    force: bool = option(False, help="publish the challenger even if it is worse")

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class Decision:
    published: bool
    reason: str

    def to_dict(self) -> dict:
        return {"published": self.published, "reason": self.reason}


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


def score_champion(
    store: ModelStore, name: str, folder: Path
) -> tuple[ModelMetadata | None, Scored | None]:
    """The newest valid version and its scores on `folder`; (None, None) if none serves."""
    if store.latest_valid(name) is None:
        return None, None
    champion = load_version(store, name)
    return champion.metadata, score_on(champion, folder)


def score_challenger(
    config: training.TrainConfig, fitted: training.Fitted, exported: Path, folder: Path
) -> Scored:
    """Export the challenger as publishing would and score those files as the champion is
    scored: same loading code, same runtime."""
    training.export_model(fitted.model, exported)
    store = ModelStore(config.models_dir)
    version = max(store.versions(config.model_name), default=0) + 1  # if it were published now
    fields = training.build_metadata(config, fitted)
    return score_on(load_export(exported, config.model_name, version, fields), folder)


def retrain(
    config: training.TrainConfig, gate: GateOptions | None = None
) -> tuple[Decision, ModelMetadata | None, dict]:
    """Fit a challenger, score it and the champion on the held-out split, publish it if the
    gate lets it through; the report is written either way."""
    gate = gate or GateOptions()
    store = ModelStore(config.models_dir)
    folder = held_out_dir(config.data_dir)
    champion, champion_scored = score_champion(store, config.model_name, folder)
    fitted = training.fit(config)
    with tempfile.TemporaryDirectory(prefix="challenger-") as exported:
        challenger = score_challenger(config, fitted, Path(exported), folder)
        models = {"challenger": {"scores": challenger.scores, "history": fitted.history}}
        if champion is not None:
            models = {f"champion v{champion.version}": {"scores": champion_scored.scores}, **models}
        decision = decide(
            challenger.scores["accuracy"],
            champion_scored.scores["accuracy"] if champion_scored else None,
            gate.tolerance,
            gate.force,
        )
        report = {
            "title": f"Retraining {config.model_name}",
            "data": data_label(folder),
            "class_names": fitted.train_split.class_names,
            "created_at": now_iso(),
            "tolerance": gate.tolerance,
            "champion_version": champion.version if champion else None,
            "models": models,
            "decision": decision.to_dict(),
        }
        if not decision.published:
            write_report(reports_folder(store, config.model_name, "not-promoted"), report)
            return decision, None, report
        return decision, promote(config, fitted, Path(exported), report), report


def promote(
    config: training.TrainConfig, fitted: training.Fitted, exported: Path, report: dict
) -> ModelMetadata:
    """Publish the files the challenger was scored on, with the report and the gate's record."""

    def extra(version_folder: Path) -> dict:
        write_report(version_folder, report)
        return {
            "promotion": {
                "held_out": report["data"],
                "champion_version": report["champion_version"],
                "decision": report["decision"],
                "scores": {k: v["scores"] for k, v in report["models"].items()},
            }
        }

    return training.publish(config, fitted, extra, exported=exported)


def parser() -> argparse.ArgumentParser:
    """The training options, then the gate's."""
    p = training.parser(prog="python -m training.retrain", description=__doc__.split("\n\n")[0])
    add_options(p, GateOptions)
    return p


@reports_errors
def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = training.parse_args(p, argv)
    config = training.config_from(p, args, argv)
    decision, metadata, _ = retrain(config, build(p, GateOptions, vars(args)))
    if metadata is not None:
        print(f"published {metadata.name} v{metadata.version}: {decision.reason}")
        return 0
    print(f"not published: {decision.reason}")
    return NOT_PROMOTED


if __name__ == "__main__":
    sys.exit(main())
