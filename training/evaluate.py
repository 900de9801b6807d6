"""Evaluate any published version on any class-folder split, with the retraining report.

python -m training.evaluate --data-dir my_data --version 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from classifier.errors import ClassifierError
from classifier.store import ModelStore
from training.report import data_label, now_iso, reports_folder, write_report
from training.retrain import held_out_dir, score_version


def evaluate_version(
    models_dir: Path, name: str, version: int | None, folder: Path, output: Path | None
) -> tuple[dict, Path]:
    store = ModelStore(models_dir)
    meta, scores, split = score_version(store, name, version, folder)
    report = {
        "title": f"Evaluation of {name} v{meta.version}",
        "data": data_label(folder),
        "class_names": list(meta.class_names),
        "created_at": now_iso(),
        "models": {f"v{meta.version}": {"scores": scores}},
        "skipped": len(split.skipped),
    }
    output = output or reports_folder(store, name, f"evaluate-v{meta.version}")
    write_report(output, report)
    return report, output


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="folder with test/ or validation/ (or a split folder of class folders)",
    )
    p.add_argument("--version", type=int, help="version to evaluate (default: newest valid)")
    p.add_argument("--model-name", default="cats_vs_dogs", help="model to evaluate")
    p.add_argument("--models-dir", type=Path, default=Path("models"), help="model store root")
    p.add_argument(
        "--output",
        type=Path,
        help="folder for report.json and report.html "
        "(default: models/<name>/reports/<time>-evaluate-v<N>)",
    )
    args = p.parse_args(argv)
    folder = args.data_dir
    if (folder / "test").is_dir() or (folder / "validation").is_dir():
        folder = held_out_dir(folder)
    try:
        report, where = evaluate_version(
            args.models_dir, args.model_name, args.version, folder, args.output
        )
    except ClassifierError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    [(label, model)] = report["models"].items()
    s = model["scores"]
    print(
        f"{args.model_name} {label} on {report['data']}: accuracy {s['accuracy']:.4f}, "
        f"precision {s['precision']:.4f}, recall {s['recall']:.4f}, ROC AUC {s['roc_auc']}; "
        f"report in {where}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
