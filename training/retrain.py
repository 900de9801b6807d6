"""Retrain, then promote the challenger only if it is not worse than the version serving.

    python -m training.retrain --data-dir my_data --model-name cats_vs_dogs

The challenger is trained with the training code (DIR/train, validated on DIR/validation).
Both it and the champion (the newest valid version) are then scored on the same held-out
split, DIR/test when present, else DIR/validation, and on the same runtime: the challenger
as exported for publishing, and those very files are what is published. The challenger is
published when its accuracy is at most --tolerance below the champion's and its recall on
every class at most --class-recall-tolerance below the champion's on that class, or with
--force; the report and the decision say which rule decided. Either way a report
(report.json and report.html) is written: inside the new version, or under
models/<name>/reports/ when nothing was published. Exit status: 0 published, 3 not; 2 and 4
as for the other training commands (training/cli.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from classifier.metadata import ModelMetadata
from classifier.store import ModelStore
from training import train as training
from training.calibration import reliability
from training.cli import Exit, epilog, reports_errors
from training.config import GateOptions
from training.data import check_split, held_out_dir
from training.lineage import manifest_rows, source_counts
from training.options import add_options, build
from training.report import (
    REPORT_HTML,
    REPORT_JSON,
    data_label,
    markdown_tables,
    now_iso,
    reports_folder,
    training_photos_lines,
    write_report,
)
from training.scoring import Scored, load_export, load_version, score_on, version_manifest

NOT_PROMOTED = Exit.NOT_PROMOTED


EPSILON = 1e-9  # a fall of exactly the tolerance is within it, whatever the float rounding


@dataclass
class Check:
    """One rule of the gate on one pair of scores."""

    rule: str  # "accuracy" or "class_recall"
    passed: bool
    detail: str

    def to_dict(self) -> dict:
        return {"rule": self.rule, "passed": self.passed, "detail": self.detail}


@dataclass
class Decision:
    """Whether the challenger is published, and which rule decided: `first_version` (no
    champion), `accuracy` or `class_recall` (the first rule it failed), `within_tolerances`
    (it passed every rule) or `force` (it failed one and --force published it anyway)."""

    published: bool
    reason: str
    rule: str = "within_tolerances"
    checks: list[Check] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "published": self.published,
            "rule": self.rule,
            "reason": self.reason,
            "checks": [c.to_dict() for c in self.checks],
        }


def accuracy_check(challenger: dict, champion: dict, tolerance: float) -> Check:
    """Overall held-out accuracy may fall at most `tolerance`."""
    new, old = challenger["accuracy"], champion["accuracy"]
    delta = new - old
    if delta >= -tolerance - EPSILON:
        return Check(
            "accuracy",
            True,
            f"challenger accuracy {new:.4f} vs champion {old:.4f} ({delta:+.4f}, tolerance "
            f"{tolerance})",
        )
    return Check(
        "accuracy",
        False,
        f"challenger accuracy {new:.4f} is {-delta:.4f} below champion {old:.4f}, more than "
        f"the tolerance {tolerance}",
    )


def class_recall_check(challenger: dict, champion: dict, tolerance: float) -> Check:
    """The held-out recall of every class may fall at most `tolerance`: a model as accurate
    overall that stopped recognising one class is worse for that class's users."""
    new, old = challenger.get("per_class"), champion.get("per_class")
    if not new or not old:
        return Check("class_recall", True, "no per-class scores to compare")
    falls = {name: old[name]["recall"] - new[name]["recall"] for name in old if name in new}
    if not falls:
        return Check("class_recall", True, "no class in common to compare")
    worst = max(falls, key=falls.get)
    too_far = [name for name, fall in falls.items() if fall > tolerance + EPSILON]
    if not too_far:
        return Check(
            "class_recall",
            True,
            f"no class's recall fell more than {tolerance} (largest change: {worst!r} "
            f"{old[worst]['recall']:.4f} -> {new[worst]['recall']:.4f})",
        )
    listed = ", ".join(
        f"{name!r} {old[name]['recall']:.4f} -> {new[name]['recall']:.4f} (-{falls[name]:.4f})"
        for name in too_far
    )
    return Check(
        "class_recall",
        False,
        f"challenger recall fell more than the class recall tolerance {tolerance} on {listed}",
    )


def decide(challenger: dict, champion: dict | None, gate: GateOptions) -> Decision:
    """The promotion gate, on the held-out scores of both (as `scoring.score` makes them):
    overall accuracy within --tolerance and every class's recall within
    --class-recall-tolerance of the champion's, or --force."""
    if champion is None:
        return Decision(True, "no valid version serves yet", "first_version")
    checks = [
        accuracy_check(challenger, champion, gate.tolerance),
        class_recall_check(challenger, champion, gate.class_recall_tolerance),
    ]
    failed = [c for c in checks if not c.passed]
    if not failed:
        return Decision(True, "; ".join(c.detail for c in checks), "within_tolerances", checks)
    reason = "; ".join(c.detail for c in failed)
    if gate.force:
        return Decision(True, f"forced: {reason}", "force", checks)
    return Decision(False, reason, failed[0].rule, checks)


def score_champion(
    store: ModelStore, name: str, folder: Path
) -> tuple[ModelMetadata | None, Scored | None]:
    """The newest valid version and its scores on `folder`; (None, None) if none serves."""
    if store.latest_valid(name) is None:
        return None, None
    champion = load_version(store, name)
    return champion.metadata, score_on(champion, folder, manifest=version_manifest(store, champion))


def score_challenger(
    config: training.TrainConfig, fitted: training.Fitted, exported: Path, folder: Path
) -> Scored:
    """Export the challenger as publishing would and score those files as the champion is
    scored: same loading code, same runtime, and refused on photos it was trained on."""
    training.export_model(fitted.model, exported)
    store = ModelStore(config.models_dir)
    version = store.next_version(config.model_name)  # if it were published now
    fields = training.build_metadata(config, fitted)
    manifest = manifest_rows(fitted.train_split, fitted.val_split)
    return score_on(
        load_export(exported, config.model_name, version, fields), folder, manifest=manifest
    )


@dataclass
class Outcome:
    """What retrain did: the decision, the published version (None: not published), the
    report and the folder it was written to."""

    decision: Decision
    metadata: ModelMetadata | None
    report: dict
    report_dir: Path


def model_entry(scored: Scored, class_names: list[str], history: dict | None) -> dict:
    """A model's part of the report: its held-out scores and calibration, its curves."""
    calibration = reliability(scored.probs, scored.split.labels, class_names).to_dict()
    return {"scores": scored.scores, "calibration": calibration, "history": history}


def champion_history(store: ModelStore, champion: ModelMetadata) -> dict | None:
    """The champion's training curves, from its version folder (None if it has none)."""
    path = store.model_dir(champion.name) / str(champion.version) / training.HISTORY_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def retrain(config: training.TrainConfig, gate: GateOptions | None = None) -> Outcome:
    """Fit a challenger, score it and the champion on the held-out split, publish it if the
    gate lets it through; the report is written either way. Both are scored as they serve:
    calibrated when they were (the temperature is in the model's files)."""
    gate = gate or GateOptions()
    store = ModelStore(config.models_dir)
    folder = held_out_dir(config.data_dir)
    class_names = training.check_data(config)  # before anything is scored or trained
    check_split(folder, class_names, of="train")
    champion, champion_scored = score_champion(store, config.model_name, folder)
    fitted = training.fit(config)
    with tempfile.TemporaryDirectory(prefix="challenger-") as exported:
        challenger = score_challenger(config, fitted, Path(exported), folder)
        names = fitted.train_split.class_names
        models = {"challenger": model_entry(challenger, names, fitted.history)}
        if fitted.calibration is not None:
            models["challenger"]["temperature_scaling"] = fitted.calibration.to_dict()
        if champion is not None:
            history = champion_history(store, champion)
            models = {
                f"champion v{champion.version}": model_entry(champion_scored, names, history),
                **models,
            }
        decision = decide(
            challenger.scores, champion_scored.scores if champion_scored else None, gate
        )
        report = {
            "title": f"Retraining {config.model_name}",
            "data": data_label(folder),
            "class_names": fitted.train_split.class_names,
            "created_at": now_iso(),
            "tolerance": gate.tolerance,
            "class_recall_tolerance": gate.class_recall_tolerance,
            "champion_version": champion.version if champion else None,
            "training_photos": source_counts(fitted.train_split),
            "models": models,
            "decision": decision.to_dict(),
        }
        if not decision.published:
            where = reports_folder(store, config.model_name, "not-promoted")
            write_report(where, report)
            training.finish_run(config)
            return Outcome(decision, None, report, where)
        metadata = promote(config, fitted, Path(exported), report)
        where = store.model_dir(metadata.name) / str(metadata.version)
        return Outcome(decision, metadata, report, where)


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
    p = training.parser(
        prog="python -m training.retrain",
        description=__doc__.split("\n\n")[0],
        epilog=epilog(*Exit),
    )
    add_options(p, GateOptions)
    return p


@reports_errors
def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = training.parse_args(p, argv)
    config = training.config_from(p, args, argv)
    outcome = retrain(config, build(p, GateOptions, vars(args)))
    decision, metadata, report = outcome.decision, outcome.metadata, outcome.report
    for label, model in report["models"].items():
        ece = model["calibration"]["expected_calibration_error"]
        print(f"\n{label} on {report['data']} (calibration error {ece:.4f}):")
        print(markdown_tables(model["scores"], report["class_names"]))
    print()
    print("\n".join(training_photos_lines(report["training_photos"])))
    if metadata is not None:
        print(f"published {metadata.name} v{metadata.version}: {decision.reason}")
    else:
        print(f"not published: {decision.reason}")
    print(f"rule: {decision.rule}")
    print(f"report: {outcome.report_dir / REPORT_HTML} (and {REPORT_JSON})")
    return 0 if metadata is not None else NOT_PROMOTED


if __name__ == "__main__":
    sys.exit(main())
