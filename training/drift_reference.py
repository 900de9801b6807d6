"""Record the drift reference of a version published without one (before training recorded
it at publish time): its answers on its validation photos, as it is served.

python -m training.drift_reference --data-dir ../shared/data/cats_vs_dogs --version 2

The version is run on DIR/validation (or on DIR itself when it is a folder of class folders)
through the service's own loading code and default runtime; the class mix of its answers and
the histogram of its top-class probability (classifier/drift.py) are written into its
metadata.json as `drift_reference`, atomically (ModelStore.amend): its model files and their
checksums do not change, so it answers exactly as before, and a running server reads the new
section at its next scan of the store (MODEL_POLL_SECONDS) without reloading the version.
Where the version has a data manifest, the photos must be its validation photos.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from classifier import drift
from classifier.errors import ModelStoreError
from classifier.store import DEFAULT_MODEL, ModelStore, default_models_dir
from training.cli import EPILOG, reports_errors
from training.data import DatasetError, Split, load_split
from training.options import AT_LEAST_ONE, check_fields, new_parser, option, options, parse
from training.scoring import load_version, probabilities_in_batches, version_manifest

RECORDED_BY = "training.drift_reference"


@options
class ReferenceOptions:
    data_dir: Path = option(
        help="the version's training data folder (its validation/ split is read), or a "
        "folder of class folders"
    )
    models_dir: Path = option(
        default_models_dir(),
        help="model store root: MODELS_DIR, else the checkout's models/, as the service's",
    )
    model_name: str = option(DEFAULT_MODEL, help="model name")
    version: int | None = option(None, help="version (default: newest valid)", within=AT_LEAST_ONE)
    replace: bool = option(False, help="replace a reference the version already has")

    def __post_init__(self) -> None:
        check_fields(self)


def validation_folder(data_dir: Path) -> Path:
    return data_dir / "validation" if (data_dir / "validation").is_dir() else data_dir


def check_photos(split: Split, manifest: list[dict[str, str]] | None, model: str) -> None:
    """Where the version lists its validation photos, these must be the same photos."""
    if not manifest:
        return
    listed = {row["sha256"] for row in manifest if row["split"] == "validation"}
    given = {photo.sha256 for photo in split.files}
    if given != listed:
        raise DatasetError(
            f"{split.where} holds {len(given - listed)} photos that are not among the "
            f"{len(listed)} validation photos of {model} (its data manifest), and lacks "
            f"{len(listed - given)} of them: give the data folder it was validated on"
        )


def record(options: ReferenceOptions) -> dict:
    """Compute the reference of the version and write it into its metadata; returns it."""
    store = ModelStore(options.models_dir)
    predictor = load_version(store, options.model_name, options.version)
    model = f"model {predictor.name} v{predictor.version}"
    if predictor.metadata.drift_reference is not None and not options.replace:
        raise ModelStoreError(
            f"{model} already has a drift reference (--replace to compute it again)",
            code="invalid_metadata",
        )
    split = load_split(
        validation_folder(options.data_dir),
        predictor.spec,
        list(predictor.class_names),
        progress=False,
        of=model,
    )
    check_photos(split, version_manifest(store, predictor), model)
    probs = probabilities_in_batches(
        lambda batch: np.asarray(predictor.predict(batch)), split.images
    )
    reference = {
        **drift.reference(probs, predictor.class_names, predictor.metadata.decision_threshold),
        "recorded_by": RECORDED_BY,
    }
    store.amend(predictor.name, predictor.version, {"drift_reference": reference})
    return {"model": predictor.name, "version": predictor.version, **reference}


@reports_errors
def main(argv: list[str] | None = None) -> int:
    p = new_parser("python -m training.drift_reference", __doc__, ReferenceOptions, epilog=EPILOG)
    options = parse(p, ReferenceOptions, argv)
    reference = record(options)
    mix = ", ".join(f"{name} {share:.1%}" for name, share in reference["class_mix"].items())
    print(
        f"recorded the drift reference of {reference['model']} v{reference['version']} from "
        f"{reference['count']} validation photos: answers {mix}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
