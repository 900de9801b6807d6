"""Evaluate any published version on any class-folder split, with the retraining report.

python -m training.evaluate --data-dir my_data --model-name my_model --version 2

The report and the printout give accuracy, per-class precision, recall and F1 with their
macro averages, top-k accuracy (more than two classes) and the confusion matrix.
"""

from __future__ import annotations

import sys
from pathlib import Path

from classifier.store import ModelStore
from training.cli import EPILOG, reports_errors
from training.options import new_parser, option, options, parse
from training.report import data_label, markdown_tables, now_iso, reports_folder, write_report
from training.scoring import (
    VersionOptions,
    load_version,
    score_on,
    split_folder,
    version_manifest,
)


@options
class EvaluateOptions(VersionOptions):
    output: Path | None = option(
        None,
        help="folder for report.json and report.html "
        "(default: models/<name>/reports/<time>-evaluate-v<N>)",
    )


def evaluate_version(
    models_dir: Path, name: str, version: int | None, folder: Path, output: Path | None
) -> tuple[dict, Path]:
    store = ModelStore(models_dir)
    predictor = load_version(store, name, version)
    scored = score_on(predictor, folder, manifest=version_manifest(store, predictor))
    report = {
        "title": f"Evaluation of {name} v{predictor.version}",
        "data": data_label(folder),
        "class_names": list(predictor.class_names),
        "created_at": now_iso(),
        "models": {f"v{predictor.version}": {"scores": scored.scores}},
        "skipped": len(scored.split.skipped),
    }
    output = output or reports_folder(store, name, f"evaluate-v{predictor.version}")
    write_report(output, report)
    return report, output


@reports_errors
def main(argv: list[str] | None = None) -> int:
    p = new_parser("python -m training.evaluate", __doc__, EvaluateOptions, epilog=EPILOG)
    options = parse(p, EvaluateOptions, argv)
    report, where = evaluate_version(
        options.models_dir,
        options.model_name,
        options.version,
        split_folder(options.data_dir),
        options.output,
    )
    [(label, model)] = report["models"].items()
    print(f"{options.model_name} {label} on {report['data']}; report in {where}")
    print(markdown_tables(model["scores"], report["class_names"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
